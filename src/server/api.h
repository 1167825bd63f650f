// The HTTP API (cpp-httplib) over a Service: /v1/inspections, /v1/products, health, metrics and the
// web page. Every request path is matched by pattern and every id checked by shape before it is
// used; nothing from a request names a file.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "server/front.h"
#include "server/service.h"

namespace httplib {
class Server;
}

namespace zeroqc {

// How the API answers a Status: its HTTP status and error code name (also used on MQTT).
int HttpStatusOf(Code c);
const char* CodeName(Code c);

class ApiServer {
 public:
  // Binds `bind:port` (port 0: any free port) and serves in background threads: the front reads
  // requests (see front.h; `limits.max_body` is set from the service's upload limit) and hands whole
  // ones to cpp-httplib's workers on a loopback port. `web_dir` holds the browser page (index.html,
  // app.js, style.css) and openapi.json; empty: neither.
  static StatusOr<std::unique_ptr<ApiServer>> Start(Service& service, const std::string& bind, int port,
                                                    const std::filesystem::path& web_dir, FrontLimits limits = {});
  ~ApiServer();
  int port() const { return port_; }
  void Wait();  // blocks until Stop() (from a signal handler thread)
  void Stop();
  // Every route served: (method, path in web/openapi.json's form, e.g. "/v1/products/{name}").
  const std::vector<std::pair<std::string, std::string>>& routes() const { return routes_; }

 private:
  ApiServer() = default;
  std::unique_ptr<httplib::Server> http_;
  std::unique_ptr<Front> front_;
  std::thread thread_;
  int port_ = 0;
  std::vector<std::pair<std::string, std::string>> routes_;
};

}  // namespace zeroqc
