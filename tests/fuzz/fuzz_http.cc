// Any bytes as a whole HTTP request to an upload route: cpp-httplib's request line, header,
// chunked and multipart/form-data parsers, then our ReadUpload (fields, base64, metadata JSON).
// Each input is served once on a server built like zeroqc serve's (same payload limit).
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "server/upload.h"

namespace {

// The request comes from the fuzzer's bytes; the answer goes nowhere.
class BytesStream : public httplib::Stream {
 public:
  BytesStream(const uint8_t* data, size_t size) : data_(reinterpret_cast<const char*>(data)), size_(size) {}
  bool is_readable() const override { return true; }
  bool is_writable() const override { return true; }
  ssize_t read(char* ptr, size_t n) override {
    n = std::min(n, size_ - pos_);
    std::memcpy(ptr, data_ + pos_, n);
    pos_ += n;
    return static_cast<ssize_t>(n);
  }
  ssize_t write(const char*, size_t n) override { return static_cast<ssize_t>(n); }
  void get_remote_ip_and_port(std::string& ip, int& port) const override { ip = "127.0.0.1", port = 1; }
  void get_local_ip_and_port(std::string& ip, int& port) const override { ip = "127.0.0.1", port = 2; }
  socket_t socket() const override { return 0; }

 private:
  const char* data_;
  size_t size_, pos_ = 0;
};

class FuzzServer : public httplib::Server {
 public:
  FuzzServer() {
    set_payload_max_length(1 << 20);
    auto upload = [](const httplib::Request& q, httplib::Response& r) {
      auto u = zeroqc::ReadUpload(q);
      if (!u.ok()) {
        if (u.status().message().empty()) std::abort();  // every refusal explains itself
        r.status = 400;
        return;
      }
      if (!u->metadata.is_null() && !u->metadata.is_object()) std::abort();
      (void)zeroqc::UploadField(u->fields, "product");
      r.set_content(std::to_string(u->bytes.size()), "text/plain");
    };
    Post("/v1/inspections", upload);
    Post(R"(/v1/products/([a-z0-9_-]+)/references)", upload);
  }
  void Serve(BytesStream& s) {
    bool closed = false;
    process_request(s, true, closed, nullptr);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static FuzzServer server;
  BytesStream s(data, size);
  server.Serve(s);
  return 0;
}
