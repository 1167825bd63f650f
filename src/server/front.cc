#include "server/front.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <list>
#include <set>
#include <map>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/log.h"

namespace zeroqc {
namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kMaxHeaderBytes = 64 << 10;  // as cpp-httplib's own header limit: else 431
constexpr size_t kReadChunk = 64 << 10;
constexpr size_t kMaxAnswerBuffer = 1 << 20;  // answer bytes held for a slow reader before the worker waits
constexpr std::chrono::seconds kLinger{2};    // after a refusal: the client's last bytes read and dropped

bool SetNonBlocking(int fd) {
  int f = fcntl(fd, F_GETFL);
  return f >= 0 && fcntl(fd, F_SETFL, f | O_NONBLOCK) == 0;
}

std::string AddressOf(const sockaddr_storage& a) {
  char buf[INET6_ADDRSTRLEN] = "";
  if (a.ss_family == AF_INET)
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(a).sin_addr, buf, sizeof buf);
  else if (a.ss_family == AF_INET6)
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(a).sin6_addr, buf, sizeof buf);
  return buf;
}

// An answer the front gives itself: the request never reached a worker.
std::string Answer(int status, const char* reason, const char* code, const std::string& message,
                   const std::string& extra_headers = "") {
  std::string body = nlohmann::json({{"error", {{"code", code}, {"message", message}}}}).dump();
  return "HTTP/1.1 " + std::to_string(status) + " " + reason +
         "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\nConnection: close\r\nX-Content-Type-Options: nosniff\r\n" + extra_headers + "\r\n" + body;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = char(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The request's head, checked and rewritten for the worker: hop-by-hop headers and any copy of the
// front's own headers dropped. `error` holds a whole answer when the request is refused.
struct Head {
  std::string kept;  // request line and headers, each ending in CRLF
  int64_t length = 0;
  bool chunked = false;
  bool expect_continue = false;
  std::string error;
};

Head ParseHead(std::string_view head, const FrontLimits& limits, const Front::AllowedMethods& allowed) {
  Head h;
  bool first = true, have_length = false;
  const std::string peer = Lower(kPeerHeader), front = Lower(kFrontHeader);
  for (size_t pos = 0; pos <= head.size();) {
    size_t eol = head.find("\r\n", pos);
    if (eol == std::string_view::npos) eol = head.size();
    std::string_view line = head.substr(pos, eol - pos);
    pos = eol + 2;
    if (first) {  // METHOD SP target SP HTTP/1.x, the method a token, the target without spaces
      first = false;
      const size_t sp1 = line.find(' '), sp2 = line.rfind(' ');
      const bool token = sp1 != std::string_view::npos && sp1 > 0 &&
                         std::all_of(line.begin(), line.begin() + sp1, [](char c) { return std::isupper(static_cast<unsigned char>(c)); });
      if (!token || sp2 == sp1 || sp2 == sp1 + 1 || line.substr(sp2 + 1, 7) != "HTTP/1." || line.size() != sp2 + 9) {
        h.error = Answer(400, "Bad Request", "bad_request", "a malformed request line: send METHOD /path HTTP/1.1");
        return h;
      }
      static const std::set<std::string_view> kKnown = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"};
      if (const auto method = line.substr(0, sp1); !kKnown.count(method)) {
        std::string target(line.substr(sp1 + 1, sp2 - sp1 - 1));
        const std::string allow = allowed ? allowed(target.substr(0, target.find('?'))) : "";
        h.error = Answer(405, "Method Not Allowed", "method_not_allowed", std::string(method) + " is not served here",
                         allow.empty() ? "" : "Allow: " + allow + "\r\n");
        return h;
      }
      h.kept.append(line).append("\r\n");
      continue;
    }
    if (line.empty() || line[0] == ' ' || line[0] == '\t') {
      h.error = Answer(400, "Bad Request", "bad_request", "folded or empty header lines are not accepted");
      return h;
    }
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      h.error = Answer(400, "Bad Request", "bad_request", "a header line without a name and a colon");
      return h;
    }
    const std::string name = Lower(Trim(line.substr(0, colon)));
    const std::string_view value = Trim(line.substr(colon + 1));
    if (name == "content-length") {
      int64_t n = 0;
      bool digits = !value.empty() && value.size() <= 15;
      for (char c : value) digits = digits && c >= '0' && c <= '9', n = n * 10 + (c - '0');
      if (!digits || (have_length && n != h.length)) {
        h.error = Answer(400, "Bad Request", "bad_request", "Content-Length must be one decimal number");
        return h;
      }
      have_length = true, h.length = n;
      continue;  // written again below, from the body actually forwarded
    }
    if (name == "transfer-encoding") {
      if (Lower(value) != "chunked") {
        h.error = Answer(501, "Not Implemented", "bad_request", "only the chunked transfer coding is accepted");
        return h;
      }
      h.chunked = true;
      continue;
    }
    if (name == "expect") {
      if (Lower(value) != "100-continue") {
        h.error = Answer(417, "Expectation Failed", "bad_request", "only 'Expect: 100-continue' is understood");
        return h;
      }
      h.expect_continue = true;
      continue;
    }
    if (name == "connection" || name == "keep-alive" || name == "proxy-connection" || name == peer || name == front)
      continue;
    h.kept.append(line).append("\r\n");
  }
  if (h.chunked && have_length) {  // the two framings disagreeing is how requests get smuggled
    h.error = Answer(400, "Bad Request", "bad_request", "send either Content-Length or chunked, not both");
  } else if (h.length > limits.max_body) {
    h.error = Answer(413, "Payload Too Large", "too_large",
                     "the body is " + std::to_string(h.length) + " bytes; the limit is " + std::to_string(limits.max_body));
  }
  return h;
}

// A chunked body decoded as its bytes arrive.
class Unchunker {
 public:
  enum Result { kMore, kDone, kBad, kTooLarge };
  // Consumes what it can of `raw` (the consumed prefix is erased) and appends the data to `body`.
  Result Feed(std::string& raw, std::string& body, int64_t max_body) {
    size_t pos = 0;
    Result r = Step(raw, pos, body, max_body);
    raw.erase(0, pos);
    return r;
  }

 private:
  Result Step(const std::string& raw, size_t& pos, std::string& body, int64_t max_body) {
    for (;;) {
      if (stage_ == kSize || stage_ == kTrailer) {
        size_t eol = raw.find("\r\n", pos);
        if (eol == std::string::npos) return raw.size() - pos > 4096 ? kBad : kMore;
        std::string_view line(raw.data() + pos, eol - pos);
        pos = eol + 2;
        if (stage_ == kTrailer) {
          if (line.empty()) return kDone;
          continue;  // trailer fields are dropped
        }
        line = line.substr(0, line.find(';'));  // chunk extensions are ignored
        if (line.empty() || line.size() > 15) return kBad;
        int64_t n = 0;
        for (char c : line) {
          if (!std::isxdigit(static_cast<unsigned char>(c))) return kBad;
          n = n * 16 + (c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
        }
        if (int64_t(body.size()) + n > max_body) return kTooLarge;
        left_ = n;
        stage_ = n == 0 ? kTrailer : kData;
      } else if (stage_ == kData) {
        size_t take = size_t(std::min<int64_t>(left_, int64_t(raw.size() - pos)));
        body.append(raw, pos, take);
        pos += take, left_ -= int64_t(take);
        if (left_ > 0) return kMore;
        stage_ = kDataEnd;
      } else {
        if (raw.size() - pos < 2) return kMore;
        if (raw.compare(pos, 2, "\r\n") != 0) return kBad;
        pos += 2;
        stage_ = kSize;
      }
    }
  }
  enum { kSize, kData, kDataEnd, kTrailer } stage_ = kSize;
  int64_t left_ = 0;
};

struct Conn {
  enum class State { kHeader, kBody, kConnect, kRelay, kAnswer, kLinger } state = State::kHeader;
  int client = -1, backend = -1;
  std::string address;
  Clock::time_point accepted, body_start, last_progress, linger_until;
  std::string in;  // bytes from the client not yet placed in the request
  Head head;
  Unchunker unchunk;
  std::string body;
  int64_t budget_held = 0;
  std::string to_backend, to_client;
  size_t to_backend_off = 0, to_client_off = 0;
  bool backend_done = false;
  bool client_eof = false;  // the client has sent all it will
  bool ready = true;        // its sockets had events: worth a try
};

// The event loop's state: the connections and what they hold.
class Loop {
 public:
  Loop(int backend_port, std::string token, FrontLimits limits, Front::AllowedMethods allowed)
      : backend_port_(backend_port), token_(std::move(token)), limits_(limits), allowed_(std::move(allowed)) {}
  ~Loop() {
    while (!conns_.empty()) Close(conns_.begin());
  }

  void Accept(int listen_fd) {
    for (;;) {
      sockaddr_storage a{};
      socklen_t len = sizeof a;
      int fd = accept4(listen_fd, reinterpret_cast<sockaddr*>(&a), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;  // EAGAIN, or out of descriptors: the rest wait in the backlog
      std::string address = AddressOf(a);
      if (int(conns_.size()) >= limits_.max_connections || per_address_[address] >= limits_.max_per_address) {
        const bool mine = per_address_[address] >= limits_.max_per_address;
        if (per_address_[address] == 0) per_address_.erase(address);
        std::string no = Answer(503, "Service Unavailable", "too_many_connections",
                                mine ? "too many open connections from your address: close some and retry"
                                     : "too many open connections: retry shortly",
                                "Retry-After: 1\r\n");
        (void)!send(fd, no.data(), no.size(), MSG_NOSIGNAL);  // best effort: never waits
        close(fd);
        WarnAtMostEvery10s(mine ? "connections from " + address + " over the limit of " +
                                      std::to_string(limits_.max_per_address) + ": refused"
                                : "open connections over the limit of " + std::to_string(limits_.max_connections) + ": refused");
        continue;
      }
      Conn& c = conns_.emplace_back();
      c.client = fd, c.address = address, c.accepted = c.last_progress = Clock::now();
      ++per_address_[address];
    }
  }

  // The poll set for every connection, and how long until the next deadline.
  int Prepare(std::vector<pollfd>& fds, std::vector<Conn*>& owners) {
    auto now = Clock::now();
    auto next = now + std::chrono::seconds(1);
    for (auto& c : conns_) {
      short client_events = 0, backend_events = 0;
      switch (c.state) {
        case Conn::State::kHeader:
        case Conn::State::kBody:
          client_events = POLLIN;
          if (c.to_client_off < c.to_client.size()) client_events |= POLLOUT;  // 100 Continue
          break;
        case Conn::State::kConnect: backend_events = POLLOUT; break;
        case Conn::State::kRelay:
          if (c.to_backend_off < c.to_backend.size()) backend_events |= POLLOUT;
          if (!c.backend_done && c.to_client.size() - c.to_client_off < kMaxAnswerBuffer) backend_events |= POLLIN;
          if (c.to_client_off < c.to_client.size()) client_events = POLLOUT;
          break;
        case Conn::State::kAnswer: client_events = POLLOUT; break;
        case Conn::State::kLinger: client_events = POLLIN; break;
      }
      next = std::min(next, Timer(c));
      if (client_events) fds.push_back({c.client, client_events, 0}), owners.push_back(&c);
      if (backend_events) fds.push_back({c.backend, backend_events, 0}), owners.push_back(&c);
    }
    return int(std::max<int64_t>(0, std::chrono::duration_cast<std::chrono::milliseconds>(next - now).count() + 1));
  }

  // Moves every connection on as far as its sockets allow, and closes the finished ones.
  void AdvanceAll() {
    const auto now = Clock::now();
    for (auto it = conns_.begin(); it != conns_.end();) {
      if (!it->ready && now < Timer(*it)) ++it;
      else if (it->ready = false; Advance(*it)) ++it;
      else Close(it++);
    }
  }

 private:
  // When a connection must be looked at even without events.
  Clock::time_point Timer(const Conn& c) const {
    auto t = Clock::time_point::max();
    if (c.state == Conn::State::kHeader || c.state == Conn::State::kBody) t = Deadline(c);
    if (c.state == Conn::State::kLinger) t = c.linger_until;
    if (c.to_client_off < c.to_client.size()) t = std::min(t, c.last_progress + limits_.client_idle);
    return t;
  }

  Clock::time_point Deadline(const Conn& c) const {
    if (c.state == Conn::State::kHeader) return c.accepted + limits_.header_timeout;
    // The body: a header timeout's grace, then at least body_min_rate on average.
    int64_t got = c.head.chunked ? int64_t(c.body.size()) : int64_t(c.to_backend.size());
    return c.body_start + limits_.header_timeout +
           std::chrono::milliseconds(got * 1000 / std::max<int64_t>(1, limits_.body_min_rate));
  }

  void Refuse(Conn& c, std::string answer) {
    Release(c);
    c.state = Conn::State::kAnswer;
    c.to_client = std::move(answer), c.to_client_off = 0;
    c.last_progress = Clock::now();
  }

  void Release(Conn& c) {
    budget_used_ -= c.budget_held;
    c.budget_held = 0;
  }

  bool Hold(Conn& c, int64_t bytes) {
    if (budget_used_ + bytes - c.budget_held > limits_.body_budget) return false;
    budget_used_ += bytes - c.budget_held;
    c.budget_held = bytes;
    return true;
  }

  // Reads what the client has sent, up to `limit` more bytes. False: the connection failed.
  static bool ReadClient(Conn& c, size_t limit) {
    char buf[16384];
    while (limit > 0 && !c.client_eof) {
      ssize_t n = recv(c.client, buf, std::min(sizeof buf, limit), 0);
      if (n > 0) {
        c.in.append(buf, size_t(n));
        limit -= size_t(n);
      } else if (n == 0) {
        c.client_eof = true;
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return true;
      } else if (errno != EINTR) {
        return false;
      }
    }
    return true;
  }

  // Writes pending bytes from `buf` at `off` to `fd`. False: the peer has gone.
  static bool Flush(int fd, const std::string& buf, size_t& off, Clock::time_point* progress) {
    while (off < buf.size()) {
      ssize_t n = send(fd, buf.data() + off, buf.size() - off, MSG_NOSIGNAL);
      if (n > 0) {
        off += size_t(n);
        if (progress) *progress = Clock::now();
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
      if (n < 0 && errno == EINTR) continue;
      return false;
    }
    return true;
  }

  bool Advance(Conn& c) {
    const auto now = Clock::now();
    if (c.to_client_off < c.to_client.size() && now - c.last_progress > limits_.client_idle) return false;
    switch (c.state) {
      case Conn::State::kHeader: return AdvanceHeader(c, now);
      case Conn::State::kBody: return AdvanceBody(c, now);
      case Conn::State::kConnect: return AdvanceConnect(c);
      case Conn::State::kRelay: return AdvanceRelay(c);
      case Conn::State::kAnswer:
        if (!Flush(c.client, c.to_client, c.to_client_off, &c.last_progress)) return false;
        if (c.to_client_off < c.to_client.size()) return true;
        // Closing with unread bytes from the client would reset the connection and could lose the
        // answer: stop sending, and read (and drop) what still comes for a moment.
        shutdown(c.client, SHUT_WR);
        c.state = Conn::State::kLinger;
        c.linger_until = now + kLinger;
        [[fallthrough]];
      case Conn::State::kLinger:
        c.in.clear();
        if (!ReadClient(c, 1 << 20) || c.client_eof) return false;
        c.in.clear();
        return now < c.linger_until;
    }
    return false;
  }

  bool AdvanceHeader(Conn& c, Clock::time_point now) {
    const size_t before = c.in.size();
    if (!ReadClient(c, kMaxHeaderBytes + 4 - c.in.size())) return false;
    size_t end = c.in.find("\r\n\r\n", before > 3 ? before - 3 : 0);
    if (end == std::string::npos) {
      if (c.client_eof) return false;
      if (c.in.size() >= kMaxHeaderBytes)
        Refuse(c, Answer(431, "Request Header Fields Too Large", "bad_request", "the request's headers pass 64 KiB"));
      else if (now >= Deadline(c))
        Refuse(c, Answer(408, "Request Timeout", "timeout",
                         "the request's headers did not arrive within " +
                             std::to_string(limits_.header_timeout.count()) + " ms"));
      return true;
    }
    c.head = ParseHead(std::string_view(c.in).substr(0, end), limits_, allowed_);
    if (!c.head.error.empty()) return Refuse(c, std::move(c.head.error)), true;
    if (!Hold(c, c.head.chunked ? 0 : c.head.length))
      return Refuse(c, Answer(503, "Service Unavailable", "busy", "the server is receiving too many uploads at once: retry shortly",
                              "Retry-After: 2\r\n")),
             true;
    c.in.erase(0, end + 4);
    if (c.head.expect_continue) c.to_client = "HTTP/1.1 100 Continue\r\n\r\n";
    c.state = Conn::State::kBody;
    c.body_start = now;
    if (!c.head.chunked) c.to_backend = std::move(c.in), c.in.clear();  // the body so far
    if (!c.head.chunked && int64_t(c.to_backend.size()) > c.head.length) c.to_backend.resize(size_t(c.head.length));
    return AdvanceBody(c, now);
  }

  bool AdvanceBody(Conn& c, Clock::time_point now) {
    if (!Flush(c.client, c.to_client, c.to_client_off, nullptr)) return false;
    if (c.head.chunked) {
      if (!ReadClient(c, kReadChunk)) return false;
      const bool eof = c.client_eof;
      switch (c.unchunk.Feed(c.in, c.body, limits_.max_body)) {
        case Unchunker::kBad: return Refuse(c, Answer(400, "Bad Request", "bad_request", "a malformed chunked body")), true;
        case Unchunker::kTooLarge:
          return Refuse(c, Answer(413, "Payload Too Large", "too_large",
                                  "the body passes the limit of " + std::to_string(limits_.max_body) + " bytes")),
                 true;
        case Unchunker::kMore:
          if (eof) return false;
          if (!Hold(c, int64_t(c.body.size())))
            return Refuse(c, Answer(503, "Service Unavailable", "busy", "the server is receiving too many uploads at once: retry shortly",
                                    "Retry-After: 2\r\n")),
                   true;
          break;
        case Unchunker::kDone:
          c.head.length = int64_t(c.body.size());
          c.to_backend = std::move(c.body);
          c.body.clear();
          return StartForward(c);
      }
    } else {
      std::swap(c.in, c.to_backend);  // read straight onto the body
      bool alive = ReadClient(c, size_t(c.head.length - int64_t(c.in.size())));
      std::swap(c.in, c.to_backend);
      if (!alive) return false;
      if (int64_t(c.to_backend.size()) == c.head.length) return StartForward(c);
    }
    if (c.client_eof) return false;  // gone before the body was whole
    if (now >= Deadline(c))
      Refuse(c, Answer(408, "Request Timeout", "timeout", "the request's body arrived too slowly"));
    return true;
  }

  // The whole request is here: a connection to a worker.
  bool StartForward(Conn& c) {
    std::string head = std::move(c.head.kept);
    head += "Content-Length: " + std::to_string(c.head.length) + "\r\n";
    head += std::string(kPeerHeader) + ": " + c.address + "\r\n";
    head += std::string(kFrontHeader) + ": " + token_ + "\r\nConnection: close\r\n\r\n";
    c.to_backend.insert(0, head);
    c.to_backend_off = 0;
    c.backend = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(uint16_t(backend_port_));
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (c.backend < 0 || (connect(c.backend, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0 && errno != EINPROGRESS)) {
      log::Error("front", std::string("cannot reach the HTTP workers: ") + std::strerror(errno));
      return Refuse(c, Answer(502, "Bad Gateway", "internal", "the server's workers are not reachable")), true;
    }
    c.state = Conn::State::kConnect;
    return AdvanceConnect(c);
  }

  bool AdvanceConnect(Conn& c) {
    pollfd p{c.backend, POLLOUT, 0};
    if (poll(&p, 1, 0) <= 0) return true;
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c.backend, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      log::Error("front", std::string("cannot reach the HTTP workers: ") + std::strerror(err));
      return Refuse(c, Answer(502, "Bad Gateway", "internal", "the server's workers are not reachable")), true;
    }
    c.state = Conn::State::kRelay;
    c.to_client.clear(), c.to_client_off = 0;
    c.last_progress = Clock::now();
    return AdvanceRelay(c);
  }

  bool AdvanceRelay(Conn& c) {
    if (!Flush(c.backend, c.to_backend, c.to_backend_off, nullptr))  // it answered early: relay that
      c.to_backend_off = c.to_backend.size();
    if (c.to_backend_off == c.to_backend.size() && c.budget_held > 0) {  // all sent: the memory is free again
      Release(c);
      std::string().swap(c.to_backend);
      c.to_backend_off = 0;
    }
    char buf[16384];
    while (!c.backend_done && c.to_client.size() - c.to_client_off < kMaxAnswerBuffer) {
      ssize_t n = recv(c.backend, buf, sizeof buf, 0);
      if (n > 0) c.to_client.append(buf, size_t(n));
      else if (n == 0) c.backend_done = true;
      else if (errno == EINTR) continue;
      else if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      else c.backend_done = true;
    }
    if (c.to_client_off > kMaxAnswerBuffer) c.to_client.erase(0, c.to_client_off), c.to_client_off = 0;
    if (!Flush(c.client, c.to_client, c.to_client_off, &c.last_progress)) return false;
    return !(c.backend_done && c.to_client_off == c.to_client.size());
  }

  void Close(std::list<Conn>::iterator it) {
    Release(*it);
    if (it->client >= 0) shutdown(it->client, SHUT_WR), close(it->client);
    if (it->backend >= 0) close(it->backend);
    if (--per_address_[it->address] <= 0) per_address_.erase(it->address);
    conns_.erase(it);
  }

  void WarnAtMostEvery10s(const std::string& message) {
    auto now = Clock::now();
    if (now - last_warning_ < std::chrono::seconds(10)) return;
    last_warning_ = now;
    log::Warn("connection_refused", message);
  }

  const int backend_port_;
  const std::string token_;
  const FrontLimits limits_;
  const Front::AllowedMethods allowed_;
  std::list<Conn> conns_;  // stable addresses: the poll set points into it
  std::map<std::string, int> per_address_;
  int64_t budget_used_ = 0;
  Clock::time_point last_warning_{};
};

}  // namespace

StatusOr<std::unique_ptr<Front>> Front::Start(const std::string& bind, int port, int backend_port, std::string token,
                                              FrontLimits limits, AllowedMethods allowed) {
  auto f = std::unique_ptr<Front>(new Front());
  f->backend_port_ = backend_port, f->token_ = std::move(token), f->limits_ = limits, f->allowed_ = std::move(allowed);
  addrinfo hints{}, *found = nullptr;
  hints.ai_family = AF_UNSPEC, hints.ai_socktype = SOCK_STREAM, hints.ai_flags = AI_PASSIVE;
  const std::string where = bind + ":" + std::to_string(port);
  if (getaddrinfo(bind.c_str(), std::to_string(port).c_str(), &hints, &found) != 0 || !found)
    return IoError("cannot listen on " + where + " (not an address of this machine)");
  int fd = socket(found->ai_family, found->ai_socktype | SOCK_CLOEXEC, found->ai_protocol);
  int yes = 1;
  if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  const bool bound = fd >= 0 && ::bind(fd, found->ai_addr, found->ai_addrlen) == 0 && listen(fd, SOMAXCONN) == 0 &&
                     SetNonBlocking(fd);
  freeaddrinfo(found);
  if (!bound) {
    if (fd >= 0) close(fd);
    return IoError("cannot listen on " + where + " (in use, or not an address of this machine)");
  }
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  f->port_ = ntohs(a.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6&>(a).sin6_port
                                           : reinterpret_cast<sockaddr_in&>(a).sin_port);
  f->listen_fd_ = fd;
  if (pipe2(f->wake_, O_CLOEXEC | O_NONBLOCK) != 0) return IoError("cannot create a pipe");
  f->thread_ = std::thread([p = f.get()] { p->Run(); });
  return f;
}

void Front::Run() {
  Loop loop(backend_port_, token_, limits_, allowed_);
  std::vector<pollfd> fds;
  std::vector<Conn*> owners;
  while (!stop_) {
    fds.assign({{wake_[0], POLLIN, 0}, {listen_fd_, POLLIN, 0}});
    owners.clear();
    int timeout = loop.Prepare(fds, owners);
    if (poll(fds.data(), fds.size(), timeout) < 0 && errno != EINTR) {
      log::Error("front", std::string("poll failed: ") + std::strerror(errno));
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (stop_) break;
    for (size_t i = 2; i < fds.size(); ++i)
      if (fds[i].revents) owners[i - 2]->ready = true;
    if (fds[1].revents & POLLIN) loop.Accept(listen_fd_);
    loop.AdvanceAll();
  }
}

void Front::Stop() {
  if (stop_.exchange(true)) return;
  if (wake_[1] >= 0) (void)!write(wake_[1], "x", 1);
}

Front::~Front() {
  Stop();
  if (thread_.joinable()) thread_.join();
  for (int fd : {listen_fd_, wake_[0], wake_[1]})
    if (fd >= 0) close(fd);
}

}  // namespace zeroqc
