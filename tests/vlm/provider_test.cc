// Each provider against a server on 127.0.0.1 that checks the request on the wire (path, headers,
// JSON shape, image blocks; for Bedrock the SigV4 signature, recomputed) and answers realistically.
#include "vlm/provider.h"

#include <chrono>

#include <gtest/gtest.h>

#include "core/base64.h"
#include "vlm/fake_model_server.h"

namespace zeroqc {
namespace {

using testing::FakeModelServer;
using testing::ScopedEnv;
using testing::SeenRequest;

constexpr const char* kAnswer = R"({"text":"one bent tuft","objects":[{"name":"bent bristles","color":"white","qc":"NOK","reason":"tuft lies over its neighbour","bounding_box":{"x_min":100,"y_min":200,"x_max":300,"y_max":400}}]})";

std::string BedrockBody(const std::string& text) {
  nlohmann::json j = {{"output", {{"message", {{"role", "assistant"}, {"content", nlohmann::json::array({{{"text", text}}})}}}}},
                      {"stopReason", "end_turn"},
                      {"usage", {{"inputTokens", 2400}, {"outputTokens", 80}, {"totalTokens", 2480}, {"cacheReadInputTokens", 1800}, {"cacheWriteInputTokens", 0}}},
                      {"metrics", {{"latencyMs", 2950}}}};
  return j.dump();
}

struct Fixture {
  EncodedImage ref{"png", "REFERENCE-PNG-BYTES", 64, 64}, qc{"jpeg", "QC-JPEG-BYTES", 64, 48};
  PromptProfile profile;
  VlmRequest Request() {
    profile = *LoadProfile("toothbrush");
    profile.top_k = 5;
    VlmRequest r;
    r.system = profile.System();
    r.instruction = profile.Instruction();
    r.references = {&ref};
    r.image = &qc;
    r.profile = &profile;
    return r;
  }
};

ProviderOptions Options(const std::string& base_url, const std::string& model) {
  ProviderOptions o;
  o.model = model;
  o.base_url = base_url;
  o.region = "us-east-1";
  o.backoff_ms = 1;
  o.timeout_ms = 5000;
  o.credentials_home = "/nonexistent";
  return o;
}

struct AwsEnv {  // static keys in the environment, nothing else
  ScopedEnv a{"AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"}, b{"AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"},
      c{"AWS_SESSION_TOKEN", "SESSIONTOKENEXAMPLE"}, d{"AWS_BEARER_TOKEN_BEDROCK", std::nullopt}, e{"AWS_PROFILE", std::nullopt};
};

TEST(Bedrock, ConverseRequestIsSignedAndShaped) {
  AwsEnv env;
  Fixture f;
  std::string failure;
  FakeModelServer server([&](const SeenRequest& q, int, httplib::Response& res) {
    // Recompute the signature from what arrived.
    SigningRequest sr{"POST", q.path, "", {{"Content-Type", q.header("content-type")}, {"Host", q.header("host")}}, q.body};
    auto expect = SignV4(sr, {"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "SESSIONTOKENEXAMPLE"},
                         {"us-east-1", "bedrock", q.header("x-amz-date")});
    std::string auth;
    for (const auto& [k, v] : expect.headers_to_add)
      if (k == "Authorization") auth = v;
    if (q.header("authorization") != auth) failure = "signature mismatch: got " + q.header("authorization") + " want " + auth;
    if (q.header("x-amz-security-token") != "SESSIONTOKENEXAMPLE") failure = "no session token";
    res.set_content(BedrockBody(kAnswer), "application/json");
  });
  auto p = MakeProvider("bedrock", Options(server.url(), "us.amazon.nova-pro-v1:0"));
  ASSERT_TRUE(p.ok()) << p.status().message();
  auto reply = (*p)->Complete(f.Request());
  ASSERT_TRUE(reply.ok()) << reply.status().message();
  EXPECT_EQ(failure, "");
  EXPECT_EQ(reply->text, kAnswer);
  EXPECT_EQ(reply->attempts, 1);
  EXPECT_EQ(reply->usage["cache_read_input_tokens"], 1800);
  EXPECT_EQ(reply->usage["model_latency_ms"], 2950);

  auto seen = server.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].path, "/model/us.amazon.nova-pro-v1%3A0/converse");
  auto body = nlohmann::json::parse(seen[0].body);
  EXPECT_NE(body["system"][0]["text"].get<std::string>().find("colour"), std::string::npos);
  EXPECT_EQ(body["system"][1]["cachePoint"]["type"], "default");
  ASSERT_EQ(body["messages"].size(), 1u);
  EXPECT_EQ(body["messages"][0]["role"], "user");
  const auto& c = body["messages"][0]["content"];
  ASSERT_EQ(c.size(), 6u);  // label, reference, cache point, label, QC image, instruction
  EXPECT_EQ(c[1]["image"]["format"], "png");
  EXPECT_EQ(*Base64Decode(c[1]["image"]["source"]["bytes"].get<std::string>()), std::vector<uint8_t>(f.ref.bytes.begin(), f.ref.bytes.end()));
  EXPECT_EQ(c[2]["cachePoint"]["type"], "default");
  EXPECT_EQ(c[4]["image"]["format"], "jpeg");  // never "jpg"
  EXPECT_NE(c[5]["text"].get<std::string>().find("x_min"), std::string::npos);
  EXPECT_EQ(body["inferenceConfig"]["maxTokens"], 1024);
  EXPECT_EQ(body["inferenceConfig"]["temperature"], 0.0);
  EXPECT_EQ(body["additionalModelRequestFields"]["inferenceConfig"]["topK"], 5);
}

TEST(Bedrock, RepairTurnAlternatesRoles) {
  AwsEnv env;
  Fixture f;
  FakeModelServer server([&](const SeenRequest&, int, httplib::Response& res) { res.set_content(BedrockBody(kAnswer), "application/json"); });
  auto p = MakeProvider("bedrock", Options(server.url(), "us.amazon.nova-lite-v1:0"));
  auto q = f.Request();
  q.previous_answer = "I think it is fine";
  q.repair = RepairInstruction("no JSON object");
  ASSERT_TRUE((*p)->Complete(q).ok());
  auto body = nlohmann::json::parse(server.requests()[0].body);
  ASSERT_EQ(body["messages"].size(), 3u);
  EXPECT_EQ(body["messages"][1]["role"], "assistant");
  EXPECT_EQ(body["messages"][2]["role"], "user");
  EXPECT_EQ(body["messages"][1]["content"][0]["text"], "I think it is fine");
}

TEST(Bedrock, ApiKeyIsSentAsBearer) {
  ScopedEnv key{"AWS_BEARER_TOKEN_BEDROCK", "bedrock-api-key-123"};
  Fixture f;
  FakeModelServer server([&](const SeenRequest&, int, httplib::Response& res) { res.set_content(BedrockBody(kAnswer), "application/json"); });
  auto p = MakeProvider("bedrock", Options(server.url(), "us.amazon.nova-pro-v1:0"));
  ASSERT_TRUE(p.ok()) << p.status().message();
  ASSERT_TRUE((*p)->Complete(f.Request()).ok());
  EXPECT_EQ(server.requests()[0].header("authorization"), "Bearer bedrock-api-key-123");
  EXPECT_EQ(server.requests()[0].header("x-amz-date"), "");
}

TEST(Bedrock, ThrottlingAndModelNotReadyAreRetried) {
  AwsEnv env;
  Fixture f;
  FakeModelServer server([&](const SeenRequest&, int i, httplib::Response& res) {
    if (i == 0) {
      res.status = 429;
      res.set_header("x-amzn-ErrorType", "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/");
      res.set_content(R"({"message":"Too many requests, please wait before trying again."})", "application/json");
    } else if (i == 1) {
      res.status = 429;  // same status, other type: only the body says so
      res.set_content(R"({"__type":"com.amazon.bedrock#ModelNotReadyException","message":"Model is not ready"})", "application/json");
    } else {
      res.set_content(BedrockBody(kAnswer), "application/json");
    }
  });
  auto p = MakeProvider("bedrock", Options(server.url(), "us.amazon.nova-pro-v1:0"));
  auto reply = (*p)->Complete(f.Request());
  ASSERT_TRUE(reply.ok()) << reply.status().message();
  EXPECT_EQ(reply->attempts, 3);
  EXPECT_EQ(server.requests().size(), 3u);
  // Each attempt is signed anew.
  EXPECT_FALSE(server.requests()[2].header("authorization").empty());
}

TEST(Bedrock, ValidationAndAccessDeniedAreNotRetried) {
  AwsEnv env;
  Fixture f;
  for (auto [status, type] : {std::pair{400, "ValidationException"}, {403, "AccessDeniedException"}}) {
    FakeModelServer server([&](const SeenRequest&, int, httplib::Response& res) {
      res.status = status;
      res.set_header("x-amzn-ErrorType", std::string(type) + ":http://internal.amazon.com/");
      res.set_content(R"({"message":"The provided image format jpg is not supported"})", "application/json");
    });
    auto p = MakeProvider("bedrock", Options(server.url(), "us.amazon.nova-pro-v1:0"));
    auto reply = (*p)->Complete(f.Request());
    ASSERT_FALSE(reply.ok());
    EXPECT_NE(reply.status().message().find(type), std::string::npos) << reply.status().message();
    EXPECT_NE(reply.status().message().find("jpg is not supported"), std::string::npos) << reply.status().message();
    EXPECT_EQ(server.requests().size(), 1u) << type;
  }
}

TEST(Bedrock, ServerErrorsExhaustTheAttempts) {
  AwsEnv env;
  Fixture f;
  FakeModelServer server([&](const SeenRequest&, int, httplib::Response& res) {
    res.status = 500;
    res.set_content(R"({"message":"internal"})", "application/json");
  });
  auto p = MakeProvider("bedrock", Options(server.url(), "us.amazon.nova-pro-v1:0"));
  auto reply = (*p)->Complete(f.Request());
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(server.requests().size(), 3u);
  EXPECT_NE(reply.status().message().find("HTTP 500"), std::string::npos) << reply.status().message();
}

TEST(Providers, RetryAfterIsHonoured) {
  Fixture f;
  FakeModelServer server([&](const SeenRequest&, int i, httplib::Response& res) {
    if (i == 0) {
      res.status = 503;
      res.set_header("Retry-After", "1");
      return;
    }
    res.set_content(R"({"choices":[{"message":{"role":"assistant","content":"{}"},"finish_reason":"stop"}]})", "application/json");
  });
  auto p = MakeProvider("openai", Options(server.url(), "gpt-4o"));
  const auto t0 = std::chrono::steady_clock::now();
  auto reply = (*p)->Complete(f.Request());
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(reply.ok()) << reply.status().message();
  EXPECT_EQ(reply->attempts, 2);
  EXPECT_GE(s, 0.95);  // backoff alone is 1 ms here
}

TEST(Providers, AHangIsCutAtTheTimeout) {
  Fixture f;
  FakeModelServer server([&](const SeenRequest&, int, httplib::Response& res) {
    std::this_thread::sleep_for(std::chrono::milliseconds(700));
    res.set_content("{}", "application/json");
  });
  auto o = Options(server.url(), "llava");
  o.timeout_ms = 150;
  o.max_attempts = 2;
  auto p = MakeProvider("ollama", o);
  const auto t0 = std::chrono::steady_clock::now();
  auto reply = (*p)->Complete(f.Request());
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_FALSE(reply.ok());
  EXPECT_NE(reply.status().message().find("timed out"), std::string::npos) << reply.status().message();
  EXPECT_EQ(server.requests().size(), 2u);
  EXPECT_LT(s, 0.69);  // two attempts of 150 ms, not one of 700
}

TEST(OpenAi, ChatCompletionsWithDataUrlsAndSchema) {
  ScopedEnv key{"MY_VLLM_KEY", "sk-test-42"};
  Fixture f;
  FakeModelServer server([&](const SeenRequest&, int, httplib::Response& res) {
    nlohmann::json j = {{"choices", {{{"message", {{"role", "assistant"}, {"content", kAnswer}}}, {"finish_reason", "stop"}}}},
                        {"usage", {{"prompt_tokens", 1500}, {"completion_tokens", 90}, {"prompt_tokens_details", {{"cached_tokens", 1024}}}}}};
    res.set_content(j.dump(), "application/json");
  });
  auto o = Options(server.url() + "/v1/", "Qwen/Qwen2.5-VL-7B-Instruct");
  o.api_key_env = "MY_VLLM_KEY";
  auto p = MakeProvider("openai", o);
  auto reply = (*p)->Complete(f.Request());
  ASSERT_TRUE(reply.ok()) << reply.status().message();
  EXPECT_EQ(reply->text, kAnswer);
  EXPECT_EQ(reply->usage["cache_read_input_tokens"], 1024);
  auto q = server.requests()[0];
  EXPECT_EQ(q.path, "/v1/chat/completions");
  EXPECT_EQ(q.header("authorization"), "Bearer sk-test-42");
  auto body = nlohmann::json::parse(q.body);
  EXPECT_EQ(body["model"], "Qwen/Qwen2.5-VL-7B-Instruct");
  EXPECT_EQ(body["messages"][0]["role"], "system");
  const auto& c = body["messages"][1]["content"];
  EXPECT_EQ(c[1]["type"], "image_url");
  EXPECT_EQ(c[1]["image_url"]["url"], "data:image/png;base64," + Base64Encode({(const uint8_t*)f.ref.bytes.data(), f.ref.bytes.size()}));
  EXPECT_EQ(c[3]["image_url"]["url"].get<std::string>().rfind("data:image/jpeg;base64,", 0), 0u);
  EXPECT_EQ(body["response_format"]["type"], "json_schema");
  EXPECT_EQ(body["response_format"]["json_schema"]["schema"], AnswerSchema());
}

TEST(Ollama, NativeChatWithImagesAndFormat) {
  Fixture f;
  FakeModelServer server([&](const SeenRequest&, int, httplib::Response& res) {
    nlohmann::json j = {{"model", "qwen2.5vl:7b"}, {"message", {{"role", "assistant"}, {"content", kAnswer}}}, {"done", true},
                        {"done_reason", "stop"}, {"prompt_eval_count", 900}, {"eval_count", 70}, {"total_duration", 4200000000}};
    res.set_content(j.dump(), "application/json");
  });
  auto p = MakeProvider("ollama", Options(server.url(), "qwen2.5vl:7b"));
  auto reply = (*p)->Complete(f.Request());
  ASSERT_TRUE(reply.ok()) << reply.status().message();
  EXPECT_EQ(reply->usage["input_tokens"], 900);
  EXPECT_DOUBLE_EQ(reply->usage["model_latency_ms"].get<double>(), 4200);
  auto q = server.requests()[0];
  EXPECT_EQ(q.path, "/api/chat");
  auto body = nlohmann::json::parse(q.body);
  EXPECT_EQ(body["stream"], false);
  EXPECT_EQ(body["format"], AnswerSchema());
  ASSERT_EQ(body["messages"][1]["images"].size(), 2u);  // the reference, then the QC image
  EXPECT_EQ(*Base64Decode(body["messages"][1]["images"][1].get<std::string>()), std::vector<uint8_t>(f.qc.bytes.begin(), f.qc.bytes.end()));
  EXPECT_EQ(body["options"]["top_k"], 5);
}

TEST(Providers, GarbageBodyIsAnErrorNotAnAnswer) {
  Fixture f;
  FakeModelServer server([&](const SeenRequest&, int, httplib::Response& res) { res.set_content("<html>proxy error</html>", "text/html"); });
  auto p = MakeProvider("openai", Options(server.url(), "gpt-4o"));
  auto reply = (*p)->Complete(f.Request());
  ASSERT_FALSE(reply.ok());
  EXPECT_NE(reply.status().message().find("not its API's answer"), std::string::npos) << reply.status().message();
  EXPECT_EQ(reply.status().message().find("proxy error"), std::string::npos) << "the body is not repeated";
}

// Issue 27, finding 3: a base_url aimed at another endpoint made every inspection's error quote what
// that endpoint answered (a file, an internal page) to any reader. Only a model API's own error
// message is repeated now.
TEST(Providers, ErrorsRepeatOnlyAModelApisOwnMessage) {
  Fixture f;
  FakeModelServer server([&](const SeenRequest& q, int, httplib::Response& res) {
    res.status = q.path.find("json") != std::string::npos ? 400 : 404;
    if (res.status == 400) res.set_content(R"({"error":{"message":"model 'x' not found","type":"invalid_request_error"}})", "application/json");
    else res.set_content("root:SECRET:19000:0:99999:7:::\n", "text/plain");
  });
  auto p = MakeProvider("openai", Options(server.url(), "gpt-4o"));
  auto reply = (*p)->Complete(f.Request());
  ASSERT_FALSE(reply.ok());
  EXPECT_NE(reply.status().message().find("HTTP 404"), std::string::npos) << reply.status().message();
  EXPECT_EQ(reply.status().message().find("SECRET"), std::string::npos) << reply.status().message();
  auto q = MakeProvider("openai", Options(server.url() + "/json", "gpt-4o"));
  reply = (*q)->Complete(f.Request());
  ASSERT_FALSE(reply.ok());
  EXPECT_NE(reply.status().message().find("HTTP 400: model 'x' not found"), std::string::npos) << reply.status().message();
}

// Finding 3: with private addresses not allowed (serve without --allow-private-models), nothing is
// sent to a loopback address, whether named by number or by name, checked at connect time.
TEST(Providers, PrivateAddressesAreRefusedAtConnect) {
  Fixture f;
  FakeModelServer server([&](const SeenRequest&, int, httplib::Response& res) { res.set_content("{}", "application/json"); });
  for (const std::string host : {"127.0.0.1", "localhost"}) {
    auto o = Options("http://" + host + ":" + server.url().substr(server.url().rfind(':') + 1), "gpt-4o");
    o.allow_private_addresses = false;
    o.max_attempts = 1;
    auto p = MakeProvider("openai", o);
    auto reply = (*p)->Complete(f.Request());
    ASSERT_FALSE(reply.ok());
    EXPECT_NE(reply.status().message().find("a loopback, private or link-local address"), std::string::npos) << reply.status().message();
  }
  EXPECT_TRUE(server.requests().empty()) << "a request reached the private address";
}

TEST(Providers, MissingModelOrCredentialsFailEarly) {
  ProviderOptions o;
  EXPECT_FALSE(MakeProvider("openai", o).ok());
  ScopedEnv a{"AWS_ACCESS_KEY_ID", std::nullopt}, b{"AWS_BEARER_TOKEN_BEDROCK", std::nullopt}, r{"AWS_REGION", "eu-west-1"};
  o = Options("", "us.amazon.nova-pro-v1:0");
  auto p = MakeProvider("bedrock", o);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("no AWS credentials"), std::string::npos) << p.status().message();
}

}  // namespace
}  // namespace zeroqc
