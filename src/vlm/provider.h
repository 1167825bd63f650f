// Model providers: one request in (system prompt, labelled images, instruction, optional repair
// turn), the model's text out. HttpProvider holds the retry policy; subclasses speak the wire format.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.h"
#include "vlm/http.h"
#include "vlm/profile.h"

namespace zeroqc {

struct EncodedImage {
  std::string format;  // "png" or "jpeg"
  std::string bytes;
  int width = 0, height = 0;  // as sent
  std::string mime() const { return "image/" + format; }
  std::string base64() const;
};

struct VlmRequest {
  std::string system, instruction;
  std::vector<const EncodedImage*> references;
  const EncodedImage* image = nullptr;  // the part to inspect
  // Optional, after the image: what another engine saw (cascade), a note and labelled crops.
  std::string evidence_note;
  std::vector<std::pair<std::string, const EncodedImage*>> evidence;  // label, crop
  const PromptProfile* profile = nullptr;
  // A second turn after an unusable answer: the model's previous text and the repair instruction.
  std::string previous_answer, repair;
};

struct VlmReply {
  std::string text;
  std::string stop_reason;
  nlohmann::json usage;  // provider's token counts, normalised keys plus the raw block
  int attempts = 0;
  double latency_ms = 0;
};

struct ProviderOptions {
  std::string model;
  std::string base_url;      // empty: the provider's default endpoint
  std::string region;        // Bedrock
  std::string api_key_env;   // OpenAI-compatible: env var holding the key (default OPENAI_API_KEY)
  int timeout_ms = 0;        // 0: the provider's default (cloud 120 s, ollama 600 s: CPU inference is slow)
  int max_attempts = 3;
  int backoff_ms = 500;      // first retry delay; doubles, with jitter
  std::string credentials_home;  // Bedrock: where ~/.aws lives (tests); empty: $HOME
  bool allow_private_addresses = true;  // serve: false unless --allow-private-models (see HttpPost)
};

class Provider {
 public:
  virtual ~Provider() = default;
  virtual std::string name() const = 0;
  virtual BoxFormat default_box_format() const = 0;
  // Thread-safe.
  virtual StatusOr<VlmReply> Complete(const VlmRequest& request) = 0;
};

// "bedrock", "openai" or "ollama".
StatusOr<std::unique_ptr<Provider>> MakeProvider(const std::string& name, const ProviderOptions& options);
std::vector<std::string> ProviderNames();

// The shared request loop: retries what the subclass calls retryable with jittered exponential
// backoff (honouring Retry-After), up to max_attempts.
class HttpProvider : public Provider {
 public:
  // An empty base URL or timeout in `o` takes the provider's default; the URL loses trailing slashes.
  HttpProvider(ProviderOptions o, const std::string& default_base_url, int default_timeout_ms);
  StatusOr<VlmReply> Complete(const VlmRequest& request) override;

 protected:
  struct Call {
    std::string url;
    HttpHeaders headers;
    std::string body;
  };
  struct Failure {
    bool retryable = false;
    std::string message;
  };
  virtual StatusOr<Call> Build(const VlmRequest& request) = 0;
  virtual Failure Classify(const HttpResponse& response) const;  // default: 429 and 5xx retry
  virtual StatusOr<VlmReply> Parse(const std::string& body) const = 0;

  ProviderOptions opt_;
};

}  // namespace zeroqc
