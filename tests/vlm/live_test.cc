// Against real endpoints, only when the environment names one; skipped otherwise (CI has no network).
//   Bedrock: ZEROQC_LIVE_BEDROCK_MODEL (e.g. us.amazon.nova-lite-v1:0) + AWS credentials and region
//   OpenAI-compatible: ZEROQC_LIVE_OPENAI_MODEL and ZEROQC_LIVE_OPENAI_BASE_URL (+ OPENAI_API_KEY if needed)
//   Ollama: ZEROQC_LIVE_OLLAMA_MODEL (base URL ZEROQC_LIVE_OLLAMA_BASE_URL, default http://127.0.0.1:11434)
#include <cstdlib>

#include <gtest/gtest.h>

#include "engines/vlm/vlm_engine.h"
#include "test_support.h"

namespace zeroqc {
namespace {

std::string Env(const char* n) {
  const char* v = std::getenv(n);
  return v ? v : "";
}

void InspectDemoPair(const std::string& provider, const std::string& model, const std::string& base_url) {
  ProviderOptions po;
  po.model = model;
  po.base_url = base_url;
  auto p = MakeProvider(provider, po);
  ASSERT_TRUE(p.ok()) << p.status().message();
  VlmEngineOptions o;
  o.profile = *LoadProfile("generic");
  o.model = model;
  auto demo = testing::SourceDir() / "demo/aws-nova-samples";
  auto e = VlmEngine::Create(std::move(*p), o, {demo / "metalplate_reference.jpg"});
  ASSERT_TRUE(e.ok()) << e.status().message();
  auto r = (*e)->Inspect(*LoadImage(demo / "metalplate_nok.jpg")).result;
  ASSERT_FALSE(r.error) << *r.error;
  std::cout << ToJson(r).dump(2) << "\n";
  EXPECT_EQ(r.verdict, "NOK");
}

TEST(Live, Bedrock) {
  if (Env("ZEROQC_LIVE_BEDROCK_MODEL").empty()) GTEST_SKIP() << "set ZEROQC_LIVE_BEDROCK_MODEL and AWS credentials to run against Bedrock";
  InspectDemoPair("bedrock", Env("ZEROQC_LIVE_BEDROCK_MODEL"), "");
}

TEST(Live, OpenAiCompatible) {
  if (Env("ZEROQC_LIVE_OPENAI_MODEL").empty() || Env("ZEROQC_LIVE_OPENAI_BASE_URL").empty())
    GTEST_SKIP() << "set ZEROQC_LIVE_OPENAI_MODEL and ZEROQC_LIVE_OPENAI_BASE_URL to run against an OpenAI-compatible server";
  InspectDemoPair("openai", Env("ZEROQC_LIVE_OPENAI_MODEL"), Env("ZEROQC_LIVE_OPENAI_BASE_URL"));
}

TEST(Live, Ollama) {
  if (Env("ZEROQC_LIVE_OLLAMA_MODEL").empty()) GTEST_SKIP() << "set ZEROQC_LIVE_OLLAMA_MODEL to run against Ollama";
  InspectDemoPair("ollama", Env("ZEROQC_LIVE_OLLAMA_MODEL"), Env("ZEROQC_LIVE_OLLAMA_BASE_URL"));
}

}  // namespace
}  // namespace zeroqc
