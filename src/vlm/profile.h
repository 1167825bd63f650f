// Prompt profiles: per product, what counts as a defect, what does not, how to answer, model settings.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/status.h"

namespace zeroqc {

enum class BoxFormat { kNorm1000, kNorm1000Yx, kPixels };
StatusOr<BoxFormat> ParseBoxFormat(const std::string& s);  // "norm1000", "norm1000-yx", "pixels"

struct PromptProfile {
  std::string name;
  std::string system_prompt;  // the role and the rule for what is a defect
  std::string instruction;    // how to answer; the schema is appended by Instruction()
  std::vector<std::string> defect_types, acceptable_variations;
  std::vector<std::filesystem::path> references;  // optional: reference images named by the profile
  int max_tokens = 1024;
  double temperature = 0.0, top_p = 0.9;
  std::optional<int> top_k;
  int image_max_side = 1024;          // images are fitted within this before sending
  std::string image_format = "png";   // "png" or "jpeg"
  std::optional<BoxFormat> box_format;  // overrides the provider's default convention

  // The system prompt with the defect types and acceptable variations spelled out.
  std::string System() const;
  // The instruction with the output schema spelled out.
  std::string Instruction() const;
};

// The JSON schema of the answer: {"text", "objects":[{"name","color","qc","reason","bounding_box"}]}.
const nlohmann::json& AnswerSchema();

// The message sent when an answer could not be used, asking for the JSON alone.
std::string RepairInstruction(const std::string& problem);

// "generic" and "toothbrush" are built in; anything else is read as a JSON file. Relative
// reference paths in a file are relative to the file.
StatusOr<PromptProfile> LoadProfile(const std::string& name_or_file);
std::vector<std::string> BuiltinProfiles();

}  // namespace zeroqc
