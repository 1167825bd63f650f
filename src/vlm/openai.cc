// OpenAI-compatible chat completions (OpenAI, vLLM, llama.cpp server, LM Studio) and Ollama's native /api/chat.
#include <cstdlib>

#include "vlm/provider.h"

namespace zeroqc {
namespace {

class OpenAi : public HttpProvider {
 public:
  explicit OpenAi(ProviderOptions o) : HttpProvider(std::move(o), "https://api.openai.com/v1", 120000) {
    const std::string env = opt_.api_key_env.empty() ? "OPENAI_API_KEY" : opt_.api_key_env;
    if (const char* k = std::getenv(env.c_str())) key_ = k;
  }
  std::string name() const override { return "openai"; }
  BoxFormat default_box_format() const override { return BoxFormat::kPixels; }  // GPT-4o-style and Qwen2.5-VL

 protected:
  StatusOr<Call> Build(const VlmRequest& q) override {
    const PromptProfile& p = *q.profile;
    nlohmann::json content = nlohmann::json::array();
    for (size_t i = 0; i < q.references.size(); ++i) {
      content.push_back({{"type", "text"}, {"text", "Reference image " + std::to_string(i + 1) + " of " + std::to_string(q.references.size()) + ": a good part."}});
      content.push_back({{"type", "image_url"}, {"image_url", {{"url", "data:" + q.references[i]->mime() + ";base64," + q.references[i]->base64()}}}});
    }
    content.push_back({{"type", "text"}, {"text", "Image to inspect:"}});
    content.push_back({{"type", "image_url"}, {"image_url", {{"url", "data:" + q.image->mime() + ";base64," + q.image->base64()}}}});
    if (!q.evidence_note.empty()) content.push_back({{"type", "text"}, {"text", q.evidence_note}});
    for (const auto& [label, crop] : q.evidence) {
      content.push_back({{"type", "text"}, {"text", label}});
      content.push_back({{"type", "image_url"}, {"image_url", {{"url", "data:" + crop->mime() + ";base64," + crop->base64()}}}});
    }
    content.push_back({{"type", "text"}, {"text", q.instruction}});
    nlohmann::json messages = {{{"role", "system"}, {"content", q.system}}, {{"role", "user"}, {"content", content}}};
    if (!q.repair.empty()) {
      messages.push_back({{"role", "assistant"}, {"content", q.previous_answer}});
      messages.push_back({{"role", "user"}, {"content", q.repair}});
    }
    nlohmann::json body = {{"model", opt_.model}, {"messages", messages}, {"max_tokens", p.max_tokens},
                           {"temperature", p.temperature}, {"top_p", p.top_p},
                           {"response_format", {{"type", "json_schema"}, {"json_schema", {{"name", "qc_result"}, {"schema", AnswerSchema()}}}}}};
    if (p.top_k) body["top_k"] = *p.top_k;  // vLLM and llama.cpp accept it; OpenAI ignores unknown sampling keys poorly, so only when set
    Call c{opt_.base_url + "/chat/completions", {{"Content-Type", "application/json"}}, body.dump()};
    if (!key_.empty()) c.headers.emplace_back("Authorization", "Bearer " + key_);
    return c;
  }

  StatusOr<VlmReply> Parse(const std::string& text) const override {
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded()) return Corrupt("not JSON");
    VlmReply r;
    try {
      const auto& choice = j.at("choices").at(0);
      const auto& c = choice.at("message").at("content");
      r.text = c.is_string() ? c.get<std::string>() : c.dump();
      r.stop_reason = choice.value("finish_reason", "");
      const auto& u = j.value("usage", nlohmann::json::object());
      r.usage = {{"input_tokens", u.value("prompt_tokens", 0)}, {"output_tokens", u.value("completion_tokens", 0)}, {"stop_reason", r.stop_reason}};
      if (u.contains("prompt_tokens_details") && u["prompt_tokens_details"].is_object())
        r.usage["cache_read_input_tokens"] = u["prompt_tokens_details"].value("cached_tokens", 0);
    } catch (const nlohmann::json::exception& e) {
      return Corrupt(std::string("no choices[0].message.content: ") + e.what());
    }
    return r;
  }

 private:
  std::string key_;
};

class Ollama : public HttpProvider {
 public:
  // Local models on a CPU are slow: ten minutes before a request counts as hung.
  explicit Ollama(ProviderOptions o) : HttpProvider(std::move(o), "http://127.0.0.1:11434", 600000) {}
  std::string name() const override { return "ollama"; }
  BoxFormat default_box_format() const override { return BoxFormat::kNorm1000; }  // Qwen2-VL/Qwen3-VL family

 protected:
  StatusOr<Call> Build(const VlmRequest& q) override {
    const PromptProfile& p = *q.profile;
    nlohmann::json images = nlohmann::json::array();
    for (const auto* r : q.references) images.push_back(r->base64());
    images.push_back(q.image->base64());
    std::string text = "The first " + std::to_string(q.references.size()) + " image(s) are references of a good part; image " +
                       std::to_string(q.references.size() + 1) + " is the part to inspect.\n";
    if (!q.evidence_note.empty()) text += q.evidence_note + "\n";
    for (size_t i = 0; i < q.evidence.size(); ++i) {  // Ollama takes images apart from the text: say which is which
      images.push_back(q.evidence[i].second->base64());
      text += "Image " + std::to_string(q.references.size() + 2 + i) + ": " + q.evidence[i].first + "\n";
    }
    text += q.instruction;
    nlohmann::json messages = {{{"role", "system"}, {"content", q.system}}, {{"role", "user"}, {"content", text}, {"images", images}}};
    if (!q.repair.empty()) {
      messages.push_back({{"role", "assistant"}, {"content", q.previous_answer}});
      messages.push_back({{"role", "user"}, {"content", q.repair}});
    }
    nlohmann::json options = {{"temperature", p.temperature}, {"top_p", p.top_p}, {"num_predict", p.max_tokens}};
    if (p.top_k) options["top_k"] = *p.top_k;
    nlohmann::json body = {{"model", opt_.model}, {"messages", messages}, {"stream", false}, {"format", AnswerSchema()}, {"options", options}};
    return Call{opt_.base_url + "/api/chat", {{"Content-Type", "application/json"}}, body.dump()};
  }

  StatusOr<VlmReply> Parse(const std::string& text) const override {
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded()) return Corrupt("not JSON");
    VlmReply r;
    try {
      r.text = j.at("message").at("content").get<std::string>();
      r.stop_reason = j.value("done_reason", "");
      r.usage = {{"input_tokens", j.value("prompt_eval_count", 0)}, {"output_tokens", j.value("eval_count", 0)}, {"stop_reason", r.stop_reason}};
      if (j.contains("total_duration")) r.usage["model_latency_ms"] = j["total_duration"].get<double>() / 1e6;
    } catch (const nlohmann::json::exception& e) {
      return Corrupt(std::string("no message.content: ") + e.what());
    }
    return r;
  }
};

}  // namespace

std::unique_ptr<Provider> MakeOpenAi(const ProviderOptions& o, Status*) { return std::make_unique<OpenAi>(o); }
std::unique_ptr<Provider> MakeOllama(const ProviderOptions& o, Status*) { return std::make_unique<Ollama>(o); }

}  // namespace zeroqc
