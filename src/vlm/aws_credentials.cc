#include "vlm/aws_credentials.h"

#include <cstdlib>
#include <fstream>
#include <map>

namespace zeroqc {
namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::string Trim(const std::string& s) {
  auto b = s.find_first_not_of(" \t\r"), e = s.find_last_not_of(" \t\r");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

// INI sections -> key -> value.
std::map<std::string, std::map<std::string, std::string>> ReadIni(const std::filesystem::path& p) {
  std::map<std::string, std::map<std::string, std::string>> out;
  std::ifstream in(p);
  std::string section;
  for (std::string line; std::getline(in, line);) {
    line = Trim(line);
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line.front() == '[' && line.back() == ']') {
      section = Trim(line.substr(1, line.size() - 2));
      continue;
    }
    auto eq = line.find('=');
    if (eq != std::string::npos) out[section][Trim(line.substr(0, eq))] = Trim(line.substr(eq + 1));
  }
  return out;
}

}  // namespace

StatusOr<AwsAuth> ResolveAwsAuth(const std::filesystem::path& home_in, const std::string& region) {
  AwsAuth a;
  const std::filesystem::path home = home_in.empty() ? std::filesystem::path(Env("HOME")) : home_in;
  const std::string profile = Env("AWS_PROFILE").empty() ? "default" : Env("AWS_PROFILE");
  auto creds = ReadIni(home / ".aws" / "credentials");
  auto config = ReadIni(home / ".aws" / "config");
  const auto& cfg = config[profile == "default" ? "default" : "profile " + profile];

  a.region = !region.empty() ? region : !Env("AWS_REGION").empty() ? Env("AWS_REGION") : !Env("AWS_DEFAULT_REGION").empty() ? Env("AWS_DEFAULT_REGION") : cfg.count("region") ? cfg.at("region") : "";
  if (a.region.empty()) return InvalidArgument("no AWS region: pass --region, set AWS_REGION, or set region in ~/.aws/config");

  a.bearer_token = Env("AWS_BEARER_TOKEN_BEDROCK");
  if (!a.bearer_token.empty()) return a;
  if (!Env("AWS_ACCESS_KEY_ID").empty() && !Env("AWS_SECRET_ACCESS_KEY").empty()) {
    a.credentials = {Env("AWS_ACCESS_KEY_ID"), Env("AWS_SECRET_ACCESS_KEY"), Env("AWS_SESSION_TOKEN")};
    return a;
  }
  using Section = std::map<std::string, std::string>;
  for (const Section* section : {static_cast<const Section*>(&creds[profile]), &cfg}) {
    if (section->count("aws_access_key_id") && section->count("aws_secret_access_key")) {
      a.credentials.access_key_id = section->at("aws_access_key_id");
      a.credentials.secret_access_key = section->at("aws_secret_access_key");
      if (section->count("aws_session_token")) a.credentials.session_token = section->at("aws_session_token");
      return a;
    }
  }
  return InvalidArgument("no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), "
                         "AWS_BEARER_TOKEN_BEDROCK, or a profile '" + profile + "' in ~/.aws/credentials");
}

}  // namespace zeroqc
