#include "server/blobs.h"

#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>

#include "core/hash.h"

namespace zeroqc {

std::filesystem::path BlobStore::LocalPath(const std::string& name) const {
  if (root_.empty()) return {};  // a store opened without a data folder (zeroqc keys --db) keeps no blobs
  // 64 hex digits, a dot, a short alphanumeric extension: nothing else reaches the filesystem.
  if (name.size() < 66 || name.size() > 70 || name[64] != '.') return {};
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool ok = i < 64 ? (std::isdigit((unsigned char)c) || (c >= 'a' && c <= 'f')) : i == 64 || std::isalnum((unsigned char)c);
    if (!ok) return {};
  }
  return root_ / name.substr(0, 2) / name;
}

std::filesystem::path BlobStore::PathOf(const std::string& name) const {
  const auto path = LocalPath(name);
  std::error_code ec;
  if (path.empty() || !remote_.get || std::filesystem::exists(path, ec)) return path;
  auto bytes = remote_.get(name);
  if (bytes.ok()) (void)WriteLocal(path, *bytes);  // a failed fetch leaves no file: readers say "cannot read"
  return path;
}

StatusOr<std::string> BlobStore::Put(std::string_view bytes, const std::string& ext) {
  const std::string name = Sha256Hex(bytes) + "." + ext;
  const auto path = LocalPath(name);
  if (path.empty()) return InvalidArgument("bad blob extension '" + ext + "'");
  if (remote_.put) ZQ_RETURN_IF_ERROR(remote_.put(name, bytes));  // durable for every worker before the name is handed out
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) return name;
  ZQ_RETURN_IF_ERROR(WriteLocal(path, bytes));
  return name;
}

Status BlobStore::WriteLocal(const std::filesystem::path& path, std::string_view bytes) const {
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path(), ec);
  static std::atomic<uint64_t> counter{0};
  const auto tmp = path.string() + ".tmp" + std::to_string(getpid()) + "." + std::to_string(counter++);
  // Messages name no server path (they reach API callers); a full disk is its own code (507).
  auto failed = [&](int err) {
    ::unlink(tmp.c_str());
    if (err == ENOSPC || err == EDQUOT) return NoSpace("the server's disk is full: the image was not stored");
    return IoError(std::string("the image cannot be stored: ") + std::strerror(err));
  };
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return failed(errno);
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + off, bytes.size() - off);
    if (n <= 0) {
      const int err = n < 0 ? errno : ENOSPC;
      ::close(fd);
      return failed(err);
    }
    off += size_t(n);
  }
  const int synced = ::fsync(fd) == 0 ? 0 : errno;
  ::close(fd);
  if (synced) return failed(synced);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) return failed(errno);
  int dir = ::open(path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);  // make the rename durable
  if (dir >= 0) ::fsync(dir), ::close(dir);
  return Status::Ok();
}

}  // namespace zeroqc
