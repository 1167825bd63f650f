// The image and fields of an upload (an inspection or a reference), read from an HTTP request:
// multipart/form-data (file part "image"), JSON (base64 "image") or a raw image/* body. Kept
// apart from the routes so that tests/fuzz/fuzz_http can drive it with hostile requests.
#pragma once

#include <string>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "core/json_limits.h"
#include "core/status.h"

namespace zeroqc {

// Client metadata and product settings: small and shallow (README: service limits).
inline constexpr JsonLimits kSmallJson{16 * 1024, 16};

struct Upload {
  std::string bytes;     // the image file, not yet decoded
  std::string filename;  // as the client named it (may be empty)
  nlohmann::json fields = nlohmann::json::object();  // every other field, strings or JSON values
  nlohmann::json metadata;                           // the "metadata" field as an object, or null
};

// Fails with kInvalidArgument (400), kUnsupported (415) or kTooLarge (413), with a message for the
// client.
StatusOr<Upload> ReadUpload(const httplib::Request& request);

// A string field of the upload: a JSON value that is not a string comes back as its JSON text.
std::string UploadField(const nlohmann::json& fields, const char* key);

}  // namespace zeroqc
