// AWS credentials and region as the AWS CLI finds them: environment first, then the profile in
// ~/.aws/credentials and ~/.aws/config.
#pragma once

#include <filesystem>
#include <string>

#include "core/status.h"
#include "vlm/sigv4.h"

namespace zeroqc {

struct AwsAuth {
  std::string bearer_token;     // AWS_BEARER_TOKEN_BEDROCK (Bedrock API key); wins when set
  AwsCredentials credentials;   // otherwise SigV4 with these
  std::string region;
};

// `home` holds .aws/ (empty: $HOME). `region` overrides the discovered region when not empty.
StatusOr<AwsAuth> ResolveAwsAuth(const std::filesystem::path& home, const std::string& region);

}  // namespace zeroqc
