#include "server/upload.h"

#include <set>

#include "core/base64.h"

namespace zeroqc {
namespace {

bool StartsWith(const std::string& s, const char* p) { return s.rfind(p, 0) == 0; }

// "metadata" arrives as JSON text (a multipart field) or as a JSON value (a JSON upload).
Status ReadMetadata(Upload& u) {
  if (!u.fields.contains("metadata")) return Status();
  const auto& m = u.fields["metadata"];
  if (m.is_string()) {
    auto parsed = ParseBoundedJson(m.get_ref<const std::string&>(), kSmallJson, "'metadata'");
    if (!parsed.ok()) return parsed.status();
    u.metadata = std::move(*parsed);
  } else {
    ZQ_RETURN_IF_ERROR(CheckJsonBounds(m.dump(), kSmallJson, "'metadata'"));  // parsed already
    u.metadata = m;
  }
  if (!u.metadata.is_object()) return InvalidArgument("'metadata' must be a JSON object");
  return Status();
}

}  // namespace

std::string UploadField(const nlohmann::json& fields, const char* key) {
  if (!fields.contains(key)) return "";
  return fields[key].is_string() ? fields[key].get<std::string>() : fields[key].dump();
}

StatusOr<Upload> ReadUpload(const httplib::Request& q) {
  const std::string type = q.get_header_value("Content-Type");
  Upload u;
  if (q.is_multipart_form_data()) {
    if (!q.has_file("image")) return InvalidArgument("multipart upload without an 'image' file part");
    auto f = q.get_file_value("image");
    u.bytes = f.content;
    u.filename = f.filename;
    for (const auto& [k, v] : q.files)
      if (k != "image") u.fields[k] = v.content;
  } else if (StartsWith(type, "application/json")) {
    // The base64 image makes the body large; the depth limit is what guards the parser.
    auto parsed = ParseBoundedJson(q.body, {q.body.size(), 32}, "the JSON upload");
    if (!parsed.ok()) return parsed.status();
    auto& j = *parsed;
    if (!j.is_object() || !j.contains("image") || !j["image"].is_string())
      return InvalidArgument("JSON upload needs an object with a base64 \"image\"");
    auto decoded = Base64Decode(j["image"].get<std::string>());
    if (!decoded.ok()) return InvalidArgument("\"image\": " + decoded.status().message());
    u.bytes.assign(decoded->begin(), decoded->end());
    if (j.contains("filename") && !j["filename"].is_string()) return InvalidArgument("'filename' must be a string");
    u.filename = j.value("filename", "");
    j.erase("image");
    u.fields = std::move(j);
  } else if (StartsWith(type, "image/")) {  // a raw image body
    u.bytes = q.body;
  } else {
    return Unsupported("send multipart/form-data, application/json or image/*, not '" + type + "'");
  }
  // A field no route reads is a mistake the caller should hear of (a typo'd "part-id" would vanish).
  static const std::set<std::string> kFields = {"product", "batch", "part_id", "station", "metadata", "filename"};
  for (const auto& [k, v] : u.fields.items())
    if (!kFields.count(k))
      return InvalidArgument("unknown upload field '" + k.substr(0, 64) + "' (fields: image, product, batch, part_id, station, metadata, filename)");
  ZQ_RETURN_IF_ERROR(ReadMetadata(u));
  return u;
}

}  // namespace zeroqc
