// Content-addressed files (images, overlays, references): DATA/blobs/ab/<sha256>.<ext>, written
// atomically and fsynced before their hash is handed out, so a row never points at a torn file.
// With a shared database the database holds every blob and this folder is each worker's cache of
// them: a name is its content's hash, so a cached copy is never stale.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

#include "core/status.h"

namespace zeroqc {

class BlobStore {
 public:
  // Where blobs live besides the local folder (the shared database): `put` stores one durably,
  // `get` reads one back (kNotFound when it is not there).
  struct Remote {
    std::function<Status(const std::string& name, std::string_view bytes)> put;
    std::function<StatusOr<std::string>(const std::string& name)> get;
  };
  explicit BlobStore(std::filesystem::path root, Remote remote = {}) : root_(std::move(root)), remote_(std::move(remote)) {}
  // Returns the blob name "<sha256>.<ext>"; storing the same bytes twice is free.
  StatusOr<std::string> Put(std::string_view bytes, const std::string& ext);
  // The local file of a blob name (fetched into the cache first when the database has it);
  // empty when the name is not one this store makes (no path tricks).
  std::filesystem::path PathOf(const std::string& name) const;

 private:
  std::filesystem::path LocalPath(const std::string& name) const;
  Status WriteLocal(const std::filesystem::path& path, std::string_view bytes) const;

  std::filesystem::path root_;
  Remote remote_;
};

}  // namespace zeroqc
