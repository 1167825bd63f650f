// A model server on 127.0.0.1 for provider and engine tests: records every request and answers
// with whatever the test's handler decides (good bodies, errors, hangs).
#pragma once

#include <chrono>
#include <cstdlib>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>

namespace zeroqc::testing {

struct SeenRequest {
  std::string method, path, body;  // path as sent, still percent-encoded
  std::map<std::string, std::string> headers;  // lower-case names
  std::string header(const std::string& k) const {
    auto it = headers.find(k);
    return it == headers.end() ? "" : it->second;
  }
};

class FakeModelServer {
 public:
  // `handler` gets the request and its index (0 for the first) and fills the response.
  using Handler = std::function<void(const SeenRequest&, int index, httplib::Response&)>;

  explicit FakeModelServer(Handler handler) : handler_(std::move(handler)) {
    server_.Post(".*", [this](const httplib::Request& req, httplib::Response& res) {
      SeenRequest seen{req.method, req.target.substr(0, req.target.find('?')), req.body, {}};
      for (const auto& [k, v] : req.headers) {
        std::string lk = k;
        for (auto& c : lk) c = char(std::tolower((unsigned char)c));
        seen.headers[lk] = v;
      }
      int index;
      {
        std::lock_guard lock(mu_);
        index = int(seen_.size());
        seen_.push_back(seen);
      }
      handler_(seen, index, res);
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~FakeModelServer() {
    server_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::vector<SeenRequest> requests() {
    std::lock_guard lock(mu_);
    return seen_;
  }

 private:
  Handler handler_;
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::vector<SeenRequest> seen_;
};

// Sets an environment variable for the scope of a test, restoring the old value after.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, std::optional<std::string> value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) setenv(name, value->c_str(), 1);
    else unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_) setenv(name_.c_str(), old_->c_str(), 1);
    else unsetenv(name_.c_str());
  }

 private:
  std::string name_;
  std::optional<std::string> old_;
};

}  // namespace zeroqc::testing
