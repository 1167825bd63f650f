#include "vlm/provider.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <random>
#include <thread>

#include "core/base64.h"

namespace zeroqc {

std::unique_ptr<Provider> MakeBedrock(const ProviderOptions& o, Status* error);
std::unique_ptr<Provider> MakeOpenAi(const ProviderOptions& o, Status* error);
std::unique_ptr<Provider> MakeOllama(const ProviderOptions& o, Status* error);

std::vector<std::string> ProviderNames() { return {"bedrock", "openai", "ollama"}; }

StatusOr<std::unique_ptr<Provider>> MakeProvider(const std::string& name, const ProviderOptions& o) {
  if (o.model.empty()) return InvalidArgument("--model is required for the vlm engine (e.g. us.amazon.nova-pro-v1:0)");
  Status error = Status::Ok();
  std::unique_ptr<Provider> p;
  if (name == "bedrock") p = MakeBedrock(o, &error);
  else if (name == "openai") p = MakeOpenAi(o, &error);
  else if (name == "ollama") p = MakeOllama(o, &error);
  else return InvalidArgument("unknown provider '" + name + "': use bedrock, openai or ollama");
  if (!error.ok()) return error;
  return p;
}

std::string EncodedImage::base64() const {
  return Base64Encode({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()});
}

HttpProvider::HttpProvider(ProviderOptions o, const std::string& default_base_url, int default_timeout_ms)
    : opt_(std::move(o)) {
  if (opt_.base_url.empty()) opt_.base_url = default_base_url;
  while (!opt_.base_url.empty() && opt_.base_url.back() == '/') opt_.base_url.pop_back();
  if (opt_.timeout_ms <= 0) opt_.timeout_ms = default_timeout_ms;
}

HttpProvider::Failure HttpProvider::Classify(const HttpResponse& r) const {
  const bool retry = r.status == 429 || r.status == 500 || r.status == 502 || r.status == 503 || r.status == 504;
  // Only a model API's own error message is repeated: whatever else the endpoint sent (a web page,
  // a file, an internal service's answer) is not shown to the callers who read inspection errors.
  std::string said;
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  if (j.is_object()) {
    const auto& e = j.contains("error") ? j["error"] : j;
    if (e.is_string()) said = e.get<std::string>();
    else if (e.is_object() && e.contains("message") && e["message"].is_string()) said = e["message"].get<std::string>();
    else if (e.is_object() && e.contains("Message") && e["Message"].is_string()) said = e["Message"].get<std::string>();
  }
  if (said.size() > 300) said = said.substr(0, 300) + "...";
  return {retry, "HTTP " + std::to_string(r.status) +
                     (said.empty() ? " (a " + std::to_string(r.body.size()) + "-byte body that is no model API error, not shown)" : ": " + said)};
}

StatusOr<VlmReply> HttpProvider::Complete(const VlmRequest& request) {
  thread_local std::mt19937 rng(std::random_device{}());
  std::string last;
  double waited_ms = 0;
  for (int attempt = 1; attempt <= opt_.max_attempts; ++attempt) {
    auto call = Build(request);  // rebuilt each time: signatures carry the time
    if (!call.ok()) return call.status();
    HttpResponse r = HttpPost(call->url, call->headers, call->body, opt_.timeout_ms, opt_.allow_private_addresses);
    waited_ms += r.elapsed_ms;
    bool retryable;
    if (!r.error.empty()) {
      retryable = true;  // timeouts and dropped connections
      last = (r.timed_out ? "timed out after " + std::to_string(opt_.timeout_ms) + " ms" : r.error);
    } else if (r.status >= 200 && r.status < 300) {
      auto reply = Parse(r.body);
      if (!reply.ok())  // the parser's message may quote the body: not repeated
        return Status(Code::kCorrupt, name() + " answered with a " + std::to_string(r.body.size()) +
                                          "-byte body that is not its API's answer");
      reply->attempts = attempt;
      reply->latency_ms = waited_ms;
      return reply;
    } else {
      auto f = Classify(r);
      retryable = f.retryable;
      last = f.message;
    }
    if (!retryable || attempt == opt_.max_attempts) break;
    double delay = opt_.backoff_ms * std::pow(2.0, attempt - 1) * std::uniform_real_distribution<>(0.5, 1.5)(rng);
    if (auto it = r.headers.find("retry-after"); it != r.headers.end()) {
      char* end = nullptr;
      double s = std::strtod(it->second.c_str(), &end);
      if (end != it->second.c_str() && s >= 0) delay = std::max(delay, std::min(s, 60.0) * 1000);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(int64_t(delay)));
  }
  return Status(Code::kIoError, name() + " request failed: " + last);
}

}  // namespace zeroqc
