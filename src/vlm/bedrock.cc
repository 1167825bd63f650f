// Amazon Bedrock Converse API (Nova and other multimodal models), SigV4 or Bedrock API key.
#include "vlm/aws_credentials.h"
#include "vlm/provider.h"

namespace zeroqc {
namespace {

nlohmann::json ImageBlock(const EncodedImage& img) {
  return {{"image", {{"format", img.format}, {"source", {{"bytes", img.base64()}}}}}};
}

nlohmann::json Message(const std::string& role, const std::string& text) {
  nlohmann::json block = {{"text", text}};
  return {{"role", role}, {"content", nlohmann::json::array({block})}};
}

// Bedrock's error type: the x-amzn-ErrorType header ("ThrottlingException:http://...") or the
// body's __type ("com.amazon...#ThrottlingException").
std::string ErrorType(const HttpResponse& r) {
  std::string t;
  if (auto it = r.headers.find("x-amzn-errortype"); it != r.headers.end()) t = it->second.substr(0, it->second.find(':'));
  if (t.empty()) {
    auto j = nlohmann::json::parse(r.body, nullptr, false);
    if (j.is_object() && j.contains("__type") && j["__type"].is_string()) {
      t = j["__type"].get<std::string>();
      t = t.substr(t.find('#') == std::string::npos ? 0 : t.find('#') + 1);
    }
  }
  return t;
}

class Bedrock : public HttpProvider {
 public:
  Bedrock(ProviderOptions o, AwsAuth auth)
      : HttpProvider(std::move(o), "https://bedrock-runtime." + auth.region + ".amazonaws.com", 120000),
        auth_(std::move(auth)) {}
  std::string name() const override { return "bedrock"; }
  BoxFormat default_box_format() const override { return BoxFormat::kNorm1000; }

 protected:
  StatusOr<Call> Build(const VlmRequest& q) override {
    const PromptProfile& p = *q.profile;
    nlohmann::json body;
    body["system"] = nlohmann::json::array({{{"text", q.system}}});
    // Prompt caching: checkpoints after the system prompt and after the references (2 of Nova's 4).
    // One placed before the prefix reaches the model's minimum (~1,000 tokens) is ignored, not refused.
    body["system"].push_back({{"cachePoint", {{"type", "default"}}}});
    nlohmann::json content = nlohmann::json::array();
    for (size_t i = 0; i < q.references.size(); ++i) {
      content.push_back({{"text", "Reference image " + std::to_string(i + 1) + " of " + std::to_string(q.references.size()) + ": a good part."}});
      content.push_back(ImageBlock(*q.references[i]));
    }
    if (!q.references.empty()) content.push_back({{"cachePoint", {{"type", "default"}}}});
    content.push_back({{"text", "Image to inspect:"}});
    content.push_back(ImageBlock(*q.image));
    if (!q.evidence_note.empty()) content.push_back({{"text", q.evidence_note}});
    for (const auto& [label, crop] : q.evidence) {
      content.push_back({{"text", label}});
      content.push_back(ImageBlock(*crop));
    }
    content.push_back({{"text", q.instruction}});
    body["messages"] = nlohmann::json::array({{{"role", "user"}, {"content", content}}});
    if (!q.repair.empty()) {  // turns alternate: Bedrock rejects consecutive user messages
      body["messages"].push_back(Message("assistant", q.previous_answer.empty() ? "(empty)" : q.previous_answer));
      body["messages"].push_back(Message("user", q.repair));
    }
    body["inferenceConfig"] = {{"maxTokens", p.max_tokens}, {"temperature", p.temperature}, {"topP", p.top_p}};
    if (p.top_k) body["additionalModelRequestFields"] = {{"inferenceConfig", {{"topK", *p.top_k}}}};

    Call c;
    const std::string path = "/model/" + AwsUriEncode(opt_.model, false) + "/converse";
    c.url = opt_.base_url + path;
    c.body = body.dump();
    UrlParts u;
    if (!SplitUrl(c.url, &u)) return InvalidArgument("bad Bedrock endpoint " + opt_.base_url);
    c.headers = {{"Content-Type", "application/json"}, {"Host", u.host}};
    if (!auth_.bearer_token.empty()) {
      c.headers.emplace_back("Authorization", "Bearer " + auth_.bearer_token);
      return c;
    }
    SigV4Options so{auth_.region, "bedrock", AmzDateNow()};
    auto signed_req = SignV4({"POST", u.path, u.query, c.headers, c.body}, auth_.credentials, so);
    for (auto& h : signed_req.headers_to_add) c.headers.push_back(std::move(h));
    return c;
  }

  Failure Classify(const HttpResponse& r) const override {
    const std::string type = ErrorType(r);
    auto j = nlohmann::json::parse(r.body, nullptr, false);
    std::string msg = j.is_object() ? j.value("message", j.value("Message", "")) : r.body.substr(0, 300);
    const std::string what = "HTTP " + std::to_string(r.status) + (type.empty() ? "" : " " + type) + ": " + msg;
    if (!type.empty()) {
      static const char* kRetry[] = {"ThrottlingException", "ModelNotReadyException", "ServiceUnavailableException",
                                     "InternalServerException", "ModelTimeoutException"};
      for (const char* t : kRetry)
        if (type == t) return {true, what};
      return {false, what};  // ValidationException, AccessDeniedException, ResourceNotFound, ...
    }
    return {r.status == 429 || r.status >= 500, what};
  }

  StatusOr<VlmReply> Parse(const std::string& text) const override {
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded()) return Corrupt("not JSON");
    VlmReply r;
    try {
      for (const auto& block : j.at("output").at("message").at("content"))
        if (block.contains("text")) r.text += block["text"].get<std::string>();
      r.stop_reason = j.value("stopReason", "");
      const auto& u = j.value("usage", nlohmann::json::object());
      r.usage = {{"input_tokens", u.value("inputTokens", 0)}, {"output_tokens", u.value("outputTokens", 0)},
                 {"cache_read_input_tokens", u.value("cacheReadInputTokens", 0)},
                 {"cache_write_input_tokens", u.value("cacheWriteInputTokens", 0)}};
      if (j.contains("metrics")) r.usage["model_latency_ms"] = j["metrics"].value("latencyMs", 0);
      r.usage["stop_reason"] = r.stop_reason;
    } catch (const nlohmann::json::exception& e) {
      return Corrupt(std::string("no output.message.content: ") + e.what());
    }
    return r;
  }

 private:
  AwsAuth auth_;
};

}  // namespace

std::unique_ptr<Provider> MakeBedrock(const ProviderOptions& o, Status* error) {
  auto auth = ResolveAwsAuth(o.credentials_home, o.region);
  if (!auth.ok()) {
    *error = auth.status();
    return nullptr;
  }
  return std::make_unique<Bedrock>(o, *auth);
}

}  // namespace zeroqc
