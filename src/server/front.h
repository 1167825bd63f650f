// The public side of the HTTP server. One event-driven thread accepts every connection and reads a
// whole request (the headers within a deadline, the body at a minimum rate) before it hands that
// request to cpp-httplib's worker pool on a loopback port. A slow client (slowloris) holds a file
// descriptor and a little memory here, never a worker; the number of connections per client address
// is bounded. cpp-httplib has no total header timeout and no per-address limit of its own.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "core/status.h"

namespace zeroqc {

struct FrontLimits {
  std::chrono::milliseconds header_timeout{10000};  // from accept to the blank line ending the headers: else 408
  int64_t body_min_rate = 16 << 10;                 // bytes/s, after a header_timeout's grace: else 408
  int max_per_address = 16;                          // open connections from one client address: else 503
  int max_connections = 1024;                        // open connections in all: else 503
  int64_t max_body = 64ll << 20;                     // Content-Length beyond: 413 without reading it
  int64_t body_budget = 256ll << 20;                 // bodies buffered at once: beyond, 503 Retry-After
  std::chrono::milliseconds client_idle{30000};      // an answer the client does not read: closed
};

// Names of the two headers the front adds to every request it forwards (any copy a client sends is
// dropped): the client's address, and the token that proves the request came through the front.
inline constexpr const char* kPeerHeader = "X-Zeroqc-Peer";
inline constexpr const char* kFrontHeader = "X-Zeroqc-Front";

class Front {
 public:
  // Listens on bind:port (port 0: any free port) and forwards each complete request, one per
  // connection, to 127.0.0.1:backend_port with the two headers above.
  // `allowed(path)`: the methods served at a path ("GET, POST"), empty when none: a method the
  // workers do not know at all (TRACE, QUERY, ...) is answered 405 here, with that Allow header.
  using AllowedMethods = std::function<std::string(const std::string& path)>;
  static StatusOr<std::unique_ptr<Front>> Start(const std::string& bind, int port, int backend_port,
                                                std::string token, FrontLimits limits, AllowedMethods allowed);
  ~Front();
  int port() const { return port_; }
  void Stop();  // Thread-safe; closes every connection.

 private:
  Front() = default;
  void Run();
  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};
  int port_ = 0;
  int backend_port_ = 0;
  std::string token_;
  FrontLimits limits_;
  AllowedMethods allowed_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace zeroqc
