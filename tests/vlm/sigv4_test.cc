// The SigV4 signer against every case of the AWS signing test suite (../shared/testdata) and the
// Bedrock Converse vectors of its README.
#include "vlm/sigv4.h"

#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "test_support.h"

namespace zeroqc {
namespace {

namespace fs = std::filesystem;

fs::path Suite() { return testing::SourceDir() / ".." / "shared" / "testdata" / "aws-sigv4-test-suite"; }

std::string Read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

// request.txt: "METHOD PATH HTTP/1.1", "Name:value" lines (indented lines continue the previous
// value), a blank line, the body.
SigningRequest ParseRequest(const std::string& text) {
  SigningRequest r;
  size_t eol = text.find('\n');
  std::string first = text.substr(0, eol);
  r.method = first.substr(0, first.find(' '));
  std::string target = first.substr(r.method.size() + 1, first.rfind(" HTTP/") - r.method.size() - 1);
  size_t q = target.find('?');
  r.path = target.substr(0, q);
  if (q != std::string::npos) r.query = target.substr(q + 1);
  size_t pos = eol + 1;
  while (pos < text.size()) {
    eol = text.find('\n', pos);
    if (eol == std::string::npos) eol = text.size();
    std::string line = text.substr(pos, eol - pos);
    pos = eol + 1;
    if (line.empty()) {
      r.body = pos < text.size() ? text.substr(pos) : "";
      break;
    }
    if (line[0] == ' ' || line[0] == '\t') r.headers.back().second += " " + line;
    else r.headers.emplace_back(line.substr(0, line.find(':')), line.substr(line.find(':') + 1));
  }
  return r;
}

std::string Authorization(const SigV4Result& r) {
  for (const auto& [k, v] : r.headers_to_add)
    if (k == "Authorization") return v;
  return {};
}

TEST(SigV4, EveryCaseOfTheAwsSuite) {
  if (!fs::exists(Suite())) GTEST_SKIP() << Suite() << " not found: the signing suite lives in ../shared/testdata";
  int cases = 0;
  for (const auto& dir : fs::directory_iterator(Suite())) {
    if (!fs::exists(dir.path() / "context.json")) continue;
    SCOPED_TRACE(dir.path().filename().string());
    auto ctx = nlohmann::json::parse(Read(dir.path() / "context.json"));
    AwsCredentials cred{ctx["credentials"]["access_key_id"], ctx["credentials"]["secret_access_key"],
                        ctx["credentials"].value("token", "")};
    SigV4Options o;
    o.region = ctx["region"];
    o.service = ctx["service"];
    std::string ts = ctx["timestamp"];  // 2015-08-30T12:36:00Z
    o.amz_date = ts.substr(0, 4) + ts.substr(5, 2) + ts.substr(8, 2) + "T" + ts.substr(11, 2) + ts.substr(14, 2) + ts.substr(17, 2) + "Z";
    o.normalize_path = ctx["normalize"];
    o.sign_body_header = ctx["sign_body"];
    o.omit_session_token = ctx.value("omit_session_token", false);
    auto r = SignV4(ParseRequest(Read(dir.path() / "request.txt")), cred, o);
    EXPECT_EQ(r.canonical_request, Read(dir.path() / "header-canonical-request.txt"));
    EXPECT_EQ(r.string_to_sign, Read(dir.path() / "header-string-to-sign.txt"));
    EXPECT_EQ(r.signature, Read(dir.path() / "header-signature.txt"));
    EXPECT_NE(Read(dir.path() / "header-signed-request.txt").find("Authorization:" + Authorization(r) + "\n"), std::string::npos)
        << Authorization(r);
    ++cases;
  }
  EXPECT_GE(cases, 38);
}

TEST(SigV4, BedrockConverseVectors) {
  SigningRequest req{"POST", "/model/us.amazon.nova-pro-v1%3A0/converse", "",
                     {{"Content-Type", "application/json"}, {"Host", "bedrock-runtime.us-east-1.amazonaws.com"}},
                     R"({"messages":[{"role":"user","content":[{"text":"hi"}]}]})"};
  AwsCredentials cred{"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", ""};
  SigV4Options o{"us-east-1", "bedrock", "20150830T123600Z"};
  auto r = SignV4(req, cred, o);
  EXPECT_NE(r.canonical_request.find("\n/model/us.amazon.nova-pro-v1%253A0/converse\n"), std::string::npos) << r.canonical_request;
  EXPECT_NE(r.canonical_request.find("\ncontent-type;host;x-amz-date\n"), std::string::npos);
  EXPECT_EQ(r.signature, "6cae76b660baf0008c5c8f702772567cd57a18e2993e6a80c1a9b1eb3dc5afeb");
  cred.session_token = "SESSIONTOKENEXAMPLE";
  r = SignV4(req, cred, o);
  EXPECT_EQ(r.signature, "1a9e7b9bd169bafe8f9f443fe021cf9316dd3b94c7983a273e7b0f4cd6eadd5e");
  EXPECT_NE(Authorization(r).find("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token,"), std::string::npos);
}

}  // namespace
}  // namespace zeroqc
