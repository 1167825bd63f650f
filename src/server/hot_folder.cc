// The hot folder: files dropped into a folder are inspected once and moved to done/ or failed/.
#include <fstream>
#include <map>
#include <set>

#include "server/log.h"
#include "server/service.h"

namespace zeroqc {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// The files that could be moved nowhere, kept on disk so that a restart does not submit them again.
// A file is known by its path, size and modification time: a new file under the same name is new.
class StuckFiles {
 public:
  explicit StuckFiles(fs::path file) : file_(std::move(file)) {
    std::ifstream in(file_);
    auto j = nlohmann::json::parse(in, nullptr, false);
    if (j.is_array())
      for (const auto& e : j)
        if (e.is_object() && e.value("path", "") != "" && Matches(e)) entries_.push_back(e);
    if (!j.is_discarded() && !j.is_array()) log::Warn("hot_folder_state", file_.string() + " is not a JSON array: ignored");
    Save();  // without the entries whose file has gone or changed
  }
  bool Has(const fs::path& p) const {
    for (const auto& e : entries_)
      if (e["path"] == p.string() && Matches(e)) return true;
    return false;
  }
  void Add(const fs::path& p) {
    entries_.push_back({{"path", p.string()}, {"identity", Identity(p)}});
    Save();
  }

 private:
  static std::string Identity(const fs::path& p) {
    std::error_code ec;
    const auto size = fs::file_size(p, ec);
    const auto mtime = fs::last_write_time(p, ec);
    return ec ? "" : std::to_string(size) + "@" + std::to_string(mtime.time_since_epoch().count());
  }
  static bool Matches(const nlohmann::json& e) {
    const std::string id = Identity(e.value("path", ""));
    return !id.empty() && e.value("identity", "") == id;
  }
  void Save() const {
    const fs::path tmp = file_.string() + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << nlohmann::json(entries_).dump() << "\n";
      if (!out.flush()) return log::Error("hot_folder_state", "cannot write " + tmp.string());
    }
    std::error_code ec;
    fs::rename(tmp, file_, ec);
    if (ec) log::Error("hot_folder_state", "cannot write " + file_.string() + ": " + ec.message());
  }
  fs::path file_;
  std::vector<nlohmann::json> entries_;
};

}  // namespace

void Service::HotFolderLoop() {
  // A file is taken once its size and mtime have not changed for a second (a camera or FTP may
  // pause while writing); a truncated image is retried until it has been still for 30 s.
  struct Seen {
    uintmax_t size;
    fs::file_time_type mtime;
    Clock::time_point still_since;
  };
  std::map<fs::path, Seen> seen;
  StuckFiles given_up(cfg_.data_dir / "hot-folder-stuck.json");  // could be moved nowhere: never submitted again
  while (!stop_) {
    std::error_code ec;
    std::set<fs::path> present;
    for (const auto& e : fs::directory_iterator(cfg_.hot_folder, ec)) {
      if (stop_ || !e.is_regular_file() || e.path().filename().string().front() == '.' || given_up.Has(e.path())) continue;
      present.insert(e.path());
      const auto size = fs::file_size(e.path(), ec);
      const auto mtime = fs::last_write_time(e.path(), ec);
      if (ec) continue;
      auto [it, fresh] = seen.try_emplace(e.path(), Seen{size, mtime, Clock::now()});
      if (!fresh && (it->second.size != size || it->second.mtime != mtime)) it->second = {size, mtime, Clock::now()};
      const auto still = Clock::now() - it->second.still_since;
      const bool old = fs::file_time_type::clock::now() - mtime >= std::chrono::seconds(1);
      if (still < std::chrono::seconds(1) && !(fresh && old)) continue;
      if (queue_full()) break;
      // The size from stat first: a huge (or sparse) file is refused without reading a byte of it,
      // and a read never takes more than the limit and one byte, should the file grow meanwhile.
      StatusOr<std::string> id = TooLarge("the file has " + std::to_string(size) + " bytes, the limit is " +
                                          std::to_string(cfg_.limits.max_bytes));
      if (int64_t(size) <= cfg_.limits.max_bytes) {
        std::ifstream in(e.path(), std::ios::binary);
        std::string bytes(size_t(size) + 1, '\0');  // one more: a file that grew is seen as such
        in.read(bytes.data(), std::streamsize(bytes.size()));
        bytes.resize(size_t(in.gcount()));
        NewInspection n;
        n.product = cfg_.hot_folder_product;
        n.image_name = e.path().filename().string();
        n.station = "hot-folder";
        n.metadata = {{"source", "hot-folder"}};
        id = Submit(n, bytes);
      }
      if (!id.ok() && id.status().code() == Code::kUnavailable) break;
      const bool truncated = !id.ok() && id.status().code() == Code::kIncomplete;
      if (truncated && still < std::chrono::seconds(30)) continue;  // perhaps still being written
      // Accepted (durably queued) -> done/; refused (corrupt, too large) -> failed/ with the reason.
      std::string reason = id.ok() ? "" : id.status().message();
      fs::path dest = cfg_.hot_folder / (id.ok() ? "done" : "failed") / e.path().filename();
      fs::rename(e.path(), dest, ec);
      if (ec && id.ok()) {  // accepted, but done/ will not take it: failed/ says why
        reason = "accepted as inspection " + *id + ", but it could not be moved to done/: " + ec.message();
        dest = cfg_.hot_folder / "failed" / e.path().filename();
        fs::rename(e.path(), dest, ec);
      }
      if (ec) {
        log::Error("hot_folder_stuck", "hot folder: cannot move " + e.path().string() + " aside (" + ec.message() +
                                           "); it will not be submitted again",
                   {{"file", e.path().string()}, {"error", ec.message()}});
        given_up.Add(e.path());
      } else if (!reason.empty()) {
        std::ofstream(dest.string() + ".error.txt") << reason << "\n";
      }
      seen.erase(e.path());
    }
    std::erase_if(seen, [&](const auto& kv) { return !present.count(kv.first); });
    std::unique_lock lock(mu_);
    work_cv_.wait_for(lock, std::chrono::milliseconds(500), [&] { return stop_.load(); });
  }
}

}  // namespace zeroqc
