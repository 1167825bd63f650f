// Where Bedrock credentials and the region come from, in the AWS CLI's order.
#include "vlm/aws_credentials.h"

#include <fstream>

#include <gtest/gtest.h>

#include "test_support.h"
#include "vlm/fake_model_server.h"

namespace zeroqc {
namespace {

using testing::ScopedEnv;

struct CleanEnv {
  ScopedEnv a{"AWS_ACCESS_KEY_ID", std::nullopt}, b{"AWS_SECRET_ACCESS_KEY", std::nullopt}, c{"AWS_SESSION_TOKEN", std::nullopt},
      d{"AWS_BEARER_TOKEN_BEDROCK", std::nullopt}, e{"AWS_PROFILE", std::nullopt}, f{"AWS_REGION", std::nullopt},
      g{"AWS_DEFAULT_REGION", std::nullopt};
};

std::filesystem::path Home() {
  auto home = testing::TempDir();
  std::filesystem::create_directories(home / ".aws");
  std::ofstream(home / ".aws/credentials") << "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = secretdefault\n\n"
                                              "# a comment\n[work]\naws_access_key_id=AKIDWORK\naws_secret_access_key=secretwork\n"
                                              "aws_session_token = tokenwork\n";
  std::ofstream(home / ".aws/config") << "[default]\nregion = us-east-1\n[profile work]\nregion = eu-central-1\n";
  return home;
}

TEST(AwsCredentials, ProfileFilesGiveKeysAndRegion) {
  CleanEnv env;
  auto home = Home();
  auto a = ResolveAwsAuth(home, "");
  ASSERT_TRUE(a.ok()) << a.status().message();
  EXPECT_EQ(a->credentials.access_key_id, "AKIDDEFAULT");
  EXPECT_EQ(a->region, "us-east-1");
  ScopedEnv p{"AWS_PROFILE", "work"};
  a = ResolveAwsAuth(home, "");
  ASSERT_TRUE(a.ok()) << a.status().message();
  EXPECT_EQ(a->credentials.access_key_id, "AKIDWORK");
  EXPECT_EQ(a->credentials.session_token, "tokenwork");
  EXPECT_EQ(a->region, "eu-central-1");
  EXPECT_EQ(ResolveAwsAuth(home, "ap-south-1")->region, "ap-south-1");  // --region wins
}

TEST(AwsCredentials, EnvironmentWinsAndApiKeyWinsOverKeys) {
  CleanEnv env;
  auto home = Home();
  ScopedEnv k{"AWS_ACCESS_KEY_ID", "AKIDENV"}, s{"AWS_SECRET_ACCESS_KEY", "secretenv"}, r{"AWS_REGION", "us-west-2"};
  auto a = ResolveAwsAuth(home, "");
  EXPECT_EQ(a->credentials.access_key_id, "AKIDENV");
  EXPECT_EQ(a->region, "us-west-2");
  EXPECT_TRUE(a->bearer_token.empty());
  ScopedEnv t{"AWS_BEARER_TOKEN_BEDROCK", "abc"};
  EXPECT_EQ(ResolveAwsAuth(home, "")->bearer_token, "abc");
}

TEST(AwsCredentials, NothingFoundSaysWhatToSet) {
  CleanEnv env;
  auto a = ResolveAwsAuth("/nonexistent", "");
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.status().message().find("region"), std::string::npos);
  a = ResolveAwsAuth("/nonexistent", "us-east-1");
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.status().message().find("AWS_ACCESS_KEY_ID"), std::string::npos);
}

}  // namespace
}  // namespace zeroqc
