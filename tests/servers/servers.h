// The real servers some tests need, never mocks: a PostgreSQL database of the test's own on the
// server that ctest's Postgres fixture started (tests/servers/postgres.sh), and a mosquitto broker
// that the test starts on a free local port and stops.
#pragma once

#include <libpq-fe.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "test_support.h"

namespace zeroqc::testing {

// A new, empty database for the running test: its URL. Fails the test when no server runs.
inline std::string NewPostgresDatabase() {
  std::ifstream in(BinaryDir() / "postgres.url");
  std::string url;
  if (!(in >> url)) {
    ADD_FAILURE() << "no PostgreSQL for the tests: run them through ctest (fixture Postgres), or start one with "
                     "tests/servers/postgres.sh start build/postgres.url";
    return "";
  }
  static int counter = 0;
  const std::string db = "zq_" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
  PGconn* c = PQconnectdb(url.c_str());
  PGresult* r = PQexec(c, ("CREATE DATABASE " + db).c_str());
  const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  if (!ok) ADD_FAILURE() << "CREATE DATABASE: " << PQerrorMessage(c);
  PQclear(r);
  PQfinish(c);
  return url.substr(0, url.rfind('/') + 1) + db;
}

// Rows of a query, as text, on the database at `url` (the tests' view behind the service's back).
inline std::vector<std::vector<std::string>> PgRows(const std::string& url, const std::string& sql) {
  std::vector<std::vector<std::string>> rows;
  PGconn* c = PQconnectdb(url.c_str());
  PGresult* r = PQexec(c, sql.c_str());
  if (PQresultStatus(r) != PGRES_TUPLES_OK) ADD_FAILURE() << sql << ": " << PQerrorMessage(c);
  for (int i = 0; i < PQntuples(r); ++i) {
    rows.emplace_back();
    for (int j = 0; j < PQnfields(r); ++j) rows.back().push_back(PQgetvalue(r, i, j));
  }
  PQclear(r);
  PQfinish(c);
  return rows;
}

// A port nothing listens on right now (the kernel's pick for port 0).
inline int FreePort() {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(s);
  return ntohs(a.sin_port);
}

inline bool Listening(int port) {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(s);
  return ok;
}

// mosquitto (Debian's broker) on 127.0.0.1:port(), anonymous, for the life of this object.
class Mosquitto {
 public:
  explicit Mosquitto(const std::filesystem::path& dir) {
    port_ = FreePort();
    const auto conf = dir / "mosquitto.conf";
    std::ofstream(conf) << "listener " << port_ << " 127.0.0.1\nallow_anonymous true\npersistence false\n"
                        << "log_dest stderr\nlog_type error\nlog_type warning\n";
    pid_ = ::fork();
    if (pid_ == 0) {
      ::execl("/usr/sbin/mosquitto", "mosquitto", "-c", conf.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    for (int i = 0; i < 100 && !Listening(port_); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (!Listening(port_)) ADD_FAILURE() << "mosquitto did not start on port " << port_ << " (is it installed? run ./setup.sh)";
  }
  ~Mosquitto() {
    ::kill(pid_, SIGTERM);
    ::waitpid(pid_, nullptr, 0);
  }
  int port() const { return port_; }
  std::string url() const { return "mqtt://127.0.0.1:" + std::to_string(port_); }

 private:
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace zeroqc::testing
