// Content-addressed files (images, overlays, references): DATA/blobs/ab/<sha256>.<ext>, written
// atomically and fsynced before their hash is handed out, so a row never points at a torn file.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "core/status.h"

namespace zeroqc {

class BlobStore {
 public:
  explicit BlobStore(std::filesystem::path root) : root_(std::move(root)) {}
  // Returns the blob name "<sha256>.<ext>"; storing the same bytes twice is free.
  StatusOr<std::string> Put(std::string_view bytes, const std::string& ext);
  // The file of a blob name; empty when the name is not one this store makes (no path tricks).
  std::filesystem::path PathOf(const std::string& name) const;

 private:
  std::filesystem::path root_;
};

}  // namespace zeroqc
