// The front of the real `zeroqc serve` process over raw TCP (issue 27, finding 1): slow clients
// (slowloris headers, a trickled body) hold no HTTP worker and are cut off with 408; connections per
// client address are bounded; the peer header cannot be forged; chunked and 100-continue bodies
// arrive whole, and broken framings are refused. Client addresses other than 127.0.0.1 are other
// loopback addresses (127.0.0.0/8 is all loopback on Linux).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "server/serve_process.h"
#include "test_support.h"

namespace zeroqc {
namespace {

using Clock = std::chrono::steady_clock;

int Connect(const std::string& from, int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in src{}, to{};
  src.sin_family = to.sin_family = AF_INET;
  inet_pton(AF_INET, from.c_str(), &src.sin_addr);
  inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
  to.sin_port = htons(uint16_t(port));
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src), 0);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to), 0);
  return fd;
}

void Send(int fd, const std::string& s) { (void)!send(fd, s.data(), s.size(), MSG_NOSIGNAL); }

// What the server sends until it closes the connection, or until `seconds` pass.
std::string ReadAll(int fd, double seconds) {
  std::string out;
  const auto end = Clock::now() + std::chrono::milliseconds(int(seconds * 1000));
  for (;;) {
    int left = int(std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now()).count());
    pollfd p{fd, POLLIN, 0};
    if (left <= 0 || poll(&p, 1, left) <= 0) return out;
    char buf[4096];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return out;
    out.append(buf, size_t(n));
  }
}

std::string Request(const std::string& from, int port, const std::string& raw, double seconds = 5) {
  int fd = Connect(from, port);
  Send(fd, raw);
  std::string answer = ReadAll(fd, seconds);
  close(fd);
  return answer;
}

int StatusOf(const std::string& answer) {
  // The last status line: a 100 Continue may come first.
  size_t at = answer.rfind("HTTP/1.1 ");
  return at == std::string::npos ? 0 : std::atoi(answer.c_str() + at + 9);
}

const std::string kHealth = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

struct Served {
  explicit Served(std::vector<std::string> extra, bool with_key = false) {
    if (with_key) {
      auto key = testing::Zeroqc("keys create --scope admin --name front --data " + (dir / "data").string());
      EXPECT_EQ(key.status, 0) << key.err;
      token = key.out.substr(0, key.out.find('\n'));
    }
    server = Spawn(dir / "data", extra);
    EXPECT_GT(server.port, 0);
  }
  ~Served() {
    kill(server.pid, SIGTERM);
    waitpid(server.pid, nullptr, 0);
  }
  std::filesystem::path dir = testing::TempDir();
  std::string token;
  ServerProcess server;
};

TEST(Front, SlowClientsHoldNoWorkerAndAreCutOff) {
  Served s({"--header-timeout", "1"});
  const int port = s.server.port;
  // More slow connections than cpp-httplib has workers (8): headers one line at a time, and a body
  // one byte at a time.
  std::vector<int> heads, bodies;
  for (int i = 0; i < 9; ++i) heads.push_back(Connect("127.0.0.1", port)), Send(heads.back(), "GET /healthz HTTP/1.1\r\nHost: x\r\n");
  for (int i = 0; i < 4; ++i) {
    bodies.push_back(Connect("127.0.0.1", port));
    Send(bodies.back(), "POST /v1/inspections HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n");
  }
  std::atomic<bool> stop{false};
  std::map<int, std::string> answers;
  std::thread trickle([&] {
    while (!stop) {
      for (int fd : heads) Send(fd, "X-Slow: 1\r\n");
      for (int fd : bodies) Send(fd, "x");
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  });
  for (int i = 0; i < 8; ++i) {  // about 2.4 s: past the header timeout, while the trickle goes on
    const auto t0 = Clock::now();
    std::string answer = Request("127.0.0.1", port, kHealth, 5);
    const double took = std::chrono::duration<double>(Clock::now() - t0).count();
    EXPECT_EQ(StatusOf(answer), 200) << answer;
    EXPECT_LT(took, 1.5) << "a /healthz waited behind slow clients";
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  stop = true;
  trickle.join();
  for (int fd : heads) {
    std::string answer = ReadAll(fd, 3);
    EXPECT_EQ(StatusOf(answer), 408) << answer;
    EXPECT_NE(answer.find("did not arrive within 1000 ms"), std::string::npos) << answer;
    close(fd);
  }
  for (int fd : bodies) {
    std::string answer = ReadAll(fd, 3);
    EXPECT_EQ(StatusOf(answer), 408) << answer;
    EXPECT_NE(answer.find("body arrived too slowly"), std::string::npos) << answer;
    close(fd);
  }
}

TEST(Front, ConnectionsPerAddressAreBounded) {
  Served s({"--max-connections-per-address", "4"});
  const int port = s.server.port;
  std::vector<int> idle;
  for (int i = 0; i < 4; ++i) idle.push_back(Connect("127.0.0.2", port));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // accepted by now
  std::string refused = Request("127.0.0.2", port, kHealth);
  EXPECT_EQ(StatusOf(refused), 503) << refused;
  EXPECT_NE(refused.find("too many open connections from your address"), std::string::npos) << refused;
  EXPECT_NE(refused.find("Retry-After: 1"), std::string::npos) << refused;
  EXPECT_EQ(StatusOf(Request("127.0.0.3", port, kHealth)), 200) << "another address is not affected";
  for (int fd : idle) close(fd);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(StatusOf(Request("127.0.0.2", port, kHealth)), 200) << "the address is served again once it closes some";
}

TEST(Front, ThePeerHeaderCannotBeForged) {
  Served s({});
  const int port = s.server.port;
  auto guess = [&](const std::string& from, const std::string& forged) {
    return StatusOf(Request(from, port,
                            "GET /v1/products HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\n" + forged +
                                "X-Zeroqc-Front: guessed\r\n\r\n"));
  };
  int status = 0;
  for (int i = 0; i < 40 && status != 429; ++i) status = guess("127.0.0.4", "X-Zeroqc-Peer: 10.0.0." + std::to_string(i) + "\r\n");
  EXPECT_EQ(status, 429) << "failed authentications count against the real address, whatever the header says";
  EXPECT_EQ(guess("127.0.0.4", "x-zeroqc-peer: 10.9.9.9\r\n"), 429);
  EXPECT_EQ(guess("127.0.0.5", ""), 401) << "another address is not slowed";
}

TEST(Front, ChunkedAndContinuedBodiesArriveWholeAndBrokenFramingsAreRefused) {
  Served s({}, /*with_key=*/true);
  const int port = s.server.port;
  const std::string auth = "Authorization: Bearer " + s.token + "\r\n";
  // As curl sends a body from a pipe: chunked, after a 100 Continue.
  int fd = Connect("127.0.0.1", port);
  Send(fd, "POST /v1/products HTTP/1.1\r\nHost: x\r\n" + auth +
               "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n");
  std::string cont = ReadAll(fd, 0.5);
  EXPECT_EQ(cont.rfind("HTTP/1.1 100 Continue\r\n\r\n", 0), 0u) << cont;
  Send(fd, "9\r\n{\"name\":\"\r\n8;ext=1\r\nchunky\"}\r\n0\r\nX-Trailer: t\r\n\r\n");
  std::string created = ReadAll(fd, 5);
  close(fd);
  EXPECT_EQ(StatusOf(created), 201) << created;
  std::string got = Request("127.0.0.1", port, "GET /v1/products/chunky HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n");
  EXPECT_EQ(StatusOf(got), 200) << got;

  const std::string post = "POST /v1/products HTTP/1.1\r\nHost: x\r\n" + auth + "Content-Type: application/json\r\n";
  std::string bad = Request("127.0.0.1", port, post + "Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n");
  EXPECT_EQ(StatusOf(bad), 400) << bad;
  EXPECT_NE(bad.find("malformed chunked body"), std::string::npos) << bad;
  std::string both = Request("127.0.0.1", port, post + "Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}");
  EXPECT_EQ(StatusOf(both), 400) << both;
  EXPECT_NE(both.find("not both"), std::string::npos) << both;
  std::string twice = Request("127.0.0.1", port, post + "Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}");
  EXPECT_EQ(StatusOf(twice), 400) << twice;
  std::string gzip = Request("127.0.0.1", port, post + "Transfer-Encoding: gzip, chunked\r\n\r\n");
  EXPECT_EQ(StatusOf(gzip), 501) << gzip;
  const auto t0 = Clock::now();
  std::string huge = Request("127.0.0.1", port, post + "Content-Length: 1000000000000\r\n\r\n{}");
  EXPECT_EQ(StatusOf(huge), 413) << huge;
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 3.0) << "refused from the header, not after reading";
  std::string folded = Request("127.0.0.1", port, "GET /healthz HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n");
  EXPECT_EQ(StatusOf(folded), 400) << folded;
  for (const std::string line : {"FOO", "GET /healthz", "get /healthz HTTP/1.1", "GET  HTTP/1.1", "GET /a b HTTP/1.1x"}) {
    std::string malformed = Request("127.0.0.1", port, line + "\r\nHost: x\r\n\r\n");
    EXPECT_EQ(StatusOf(malformed), 400) << line;
    EXPECT_NE(malformed.find("a malformed request line"), std::string::npos) << line << ": " << malformed;
  }
  EXPECT_EQ(StatusOf(Request("127.0.0.1", port, kHealth)), 200) << "and the server is still there";
}

}  // namespace
}  // namespace zeroqc
