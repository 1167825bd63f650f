#include "vlm/profile.h"

#include <fstream>

namespace zeroqc {
namespace {

// Written for zeroqc: the strict comparison the reference design started from.
constexpr const char* kGenericSystem =
    "You are a quality-control inspector on a production line. You are shown one or more reference "
    "images of a part that passed inspection, then one image of a part to inspect. Compare the inspected "
    "part with the reference closely. Any visible difference in shape, completeness, surface, position of "
    "features, contamination or foreign material is a defect, however small. Differences caused only by "
    "the camera (a slight shift, rotation, zoom, exposure or white balance) are not defects. Judge only "
    "what you can see; when a region is unclear, say so in the reason.";

constexpr const char* kInstruction =
    "Inspect the last image against the reference image(s). Answer with one JSON object and nothing "
    "else: no markdown, no comments. \"text\" is one sentence summarising the verdict. \"objects\" lists "
    "every defect you find as an object with \"qc\": \"NOK\"; if the part is good, list the part itself "
    "once with \"qc\": \"OK\". For each object give \"name\" (what it is, e.g. \"bent bristles\"), "
    "\"color\" (its dominant colour in words), \"reason\" (why it is or is not a defect) and "
    "\"bounding_box\" with integer \"x_min\", \"y_min\", \"x_max\", \"y_max\" around it in the inspected "
    "image, on a 0-1000 scale of its width and height unless told otherwise.";

PromptProfile Generic() {
  PromptProfile p;
  p.name = "generic";
  p.system_prompt = kGenericSystem;
  p.instruction = kInstruction;
  return p;
}

// The product knowledge that lifted the reference design from 0.81 to 0.93: what a toothbrush
// defect looks like, and that bristle and handle colours legitimately vary.
PromptProfile Toothbrush() {
  PromptProfile p = Generic();
  p.name = "toothbrush";
  p.system_prompt =
      "You are a quality-control inspector for toothbrush heads, photographed from above on a dark "
      "background. You are shown reference images of good toothbrush heads, then one head to inspect. "
      "A good head has its bristle tufts in a regular grid, each tuft straight, upright, evenly trimmed "
      "and complete, and a clean head with no foreign matter. Toothbrushes are made in several colours, "
      "so a colour that differs from the reference is not a defect by itself.";
  p.defect_types = {"bristles bent, splayed, crossed or lying over other tufts",
                    "missing or sparse tufts, or a gap in the grid",
                    "tufts cut too short or unevenly",
                    "stray or loose bristles outside the tuft grid",
                    "foreign material, fibres, dirt or residue on the head or bristles",
                    "damage to the plastic head: cracks, chips, deformation"};
  p.acceptable_variations = {"bristle colour (white, blue, red, yellow, mixed) and handle colour",
                             "small shifts, rotations or scale changes of the head in the frame",
                             "lighting and exposure differences",
                             "the small natural irregularity of bristle tips in a healthy tuft"};
  return p;
}

std::string Bullets(const std::vector<std::string>& items) {
  std::string s;
  for (const auto& i : items) s += "\n- " + i;
  return s;
}

}  // namespace

StatusOr<BoxFormat> ParseBoxFormat(const std::string& s) {
  if (s == "norm1000") return BoxFormat::kNorm1000;
  if (s == "norm1000-yx") return BoxFormat::kNorm1000Yx;
  if (s == "pixels") return BoxFormat::kPixels;
  return InvalidArgument("unknown box format '" + s + "': use norm1000, norm1000-yx or pixels");
}

std::string PromptProfile::System() const {
  std::string s = system_prompt;
  if (!defect_types.empty()) s += "\n\nDefects to look for:" + Bullets(defect_types);
  if (!acceptable_variations.empty()) s += "\n\nThese are NOT defects:" + Bullets(acceptable_variations);
  return s;
}

std::string PromptProfile::Instruction() const {
  std::string s = instruction;
  if (box_format == BoxFormat::kPixels)
    s += " Give bounding boxes in pixels of the inspected image as you received it.";
  return s + "\nThe answer must match this JSON schema:\n" + AnswerSchema().dump();
}

const nlohmann::json& AnswerSchema() {
  static const nlohmann::json schema = nlohmann::json::parse(R"({
    "type": "object",
    "properties": {
      "text": {"type": "string"},
      "objects": {"type": "array", "items": {
        "type": "object",
        "properties": {
          "name": {"type": "string"}, "color": {"type": "string"},
          "qc": {"type": "string", "enum": ["OK", "NOK"]}, "reason": {"type": "string"},
          "bounding_box": {"type": "object", "properties": {
            "x_min": {"type": "integer"}, "y_min": {"type": "integer"},
            "x_max": {"type": "integer"}, "y_max": {"type": "integer"}},
            "required": ["x_min", "y_min", "x_max", "y_max"]}},
        "required": ["name", "color", "qc", "reason", "bounding_box"]}}},
    "required": ["text", "objects"]})");
  return schema;
}

std::string RepairInstruction(const std::string& problem) {
  return "Your previous answer could not be used (" + problem +
         "). Answer again with only the JSON object described before, matching the schema exactly, with "
         "no other text.";
}

std::vector<std::string> BuiltinProfiles() { return {"generic", "toothbrush"}; }

StatusOr<PromptProfile> LoadProfile(const std::string& name_or_file) {
  if (name_or_file.empty() || name_or_file == "generic") return Generic();
  if (name_or_file == "toothbrush") return Toothbrush();
  std::ifstream in(name_or_file);
  if (!in) return NotFound("prompt profile '" + name_or_file + "' is neither built in (generic, toothbrush) nor a readable file");
  auto j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return InvalidArgument(name_or_file + " is not a JSON object");
  PromptProfile p = Generic();
  p.name = std::filesystem::path(name_or_file).stem().string();
  try {
    p.name = j.value("name", p.name);
    p.system_prompt = j.value("system_prompt", p.system_prompt);
    p.instruction = j.value("instruction", p.instruction);
    p.defect_types = j.value("defect_types", p.defect_types);
    p.acceptable_variations = j.value("acceptable_variations", p.acceptable_variations);
    p.max_tokens = j.value("max_tokens", p.max_tokens);
    p.temperature = j.value("temperature", p.temperature);
    p.top_p = j.value("top_p", p.top_p);
    if (j.contains("top_k")) p.top_k = j["top_k"].get<int>();
    p.image_max_side = j.value("image_max_side", p.image_max_side);
    p.image_format = j.value("image_format", p.image_format);
    if (j.contains("box_format")) {
      auto b = ParseBoxFormat(j["box_format"].get<std::string>());
      if (!b.ok()) return InvalidArgument(name_or_file + ": " + b.status().message());
      p.box_format = *b;
    }
    for (const auto& r : j.value("references", std::vector<std::string>{})) {
      std::filesystem::path path = r;
      p.references.push_back(path.is_absolute() ? path : std::filesystem::path(name_or_file).parent_path() / path);
    }
  } catch (const nlohmann::json::exception& e) {
    return InvalidArgument(name_or_file + ": " + e.what());
  }
  if (p.image_format == "jpg") p.image_format = "jpeg";
  if (p.image_format != "png" && p.image_format != "jpeg") return InvalidArgument(name_or_file + ": image_format must be png or jpeg");
  if (p.max_tokens < 16 || p.image_max_side < 64) return InvalidArgument(name_or_file + ": max_tokens >= 16 and image_max_side >= 64");
  return p;
}

}  // namespace zeroqc
