#include "server/service.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include <openssl/rand.h>

#include <opencv2/imgcodecs.hpp>

#include "core/hash.h"
#include "engines/defect_names.h"
#include "engines/patch/reference_choice.h"
#include "image/overlay.h"
#include "server/log.h"
#include "vlm/http.h"

namespace zeroqc {
namespace {

const double kLatencyBounds[] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};  // engine builds too

std::string Ext(const std::string& format) { return format == "jpeg" ? "jpg" : format.empty() ? "bin" : format; }

}  // namespace

std::string WebhookSignature(const std::string& secret, const std::string& body) { return HexLower(HmacSha256(secret, body)); }

StatusOr<std::unique_ptr<Service>> Service::Start(ServiceConfig c) {
  if (!c.make_engine) return InvalidArgument("service needs an engine factory");
  auto s = std::unique_ptr<Service>(new Service(std::move(c)));
  // One service per data folder: a second one would requeue the first one's running jobs and
  // deliver its webhooks twice. flock is released by the kernel if the process dies.
  std::error_code ec;
  std::filesystem::create_directories(s->cfg_.data_dir, ec);
  const auto lock_path = s->cfg_.data_dir / "serve.lock";
  s->lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (s->lock_fd_ < 0) return IoError("cannot open " + lock_path.string() + ": " + std::strerror(errno));
  if (::flock(s->lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    char owner[32] = {0};
    (void)!::pread(s->lock_fd_, owner, sizeof owner - 1, 0);
    return Unavailable("another zeroqc serve (pid " + std::string(owner[0] ? owner : "?") + ") is using " +
                       s->cfg_.data_dir.string() + ": stop it first, or give this one its own --data");
  }
  const std::string pid = std::to_string(::getpid());
  (void)!::ftruncate(s->lock_fd_, 0);
  (void)!::pwrite(s->lock_fd_, pid.data(), pid.size(), 0);
  auto store = Store::Open(s->cfg_.data_dir, s->cfg_.db_url);
  if (!store.ok()) return store.status();
  s->store_ = std::move(*store);
  char host[256] = "localhost";
  (void)gethostname(host, sizeof host - 1);
  unsigned char salt[3];
  RAND_bytes(salt, sizeof salt);
  s->worker_id_ = std::string(host) + ":" + pid + ":" + HexLower(std::string(reinterpret_cast<char*>(salt), sizeof salt));
  // Work accepted before a crash or restart resumes: at once with SQLite (this process is its only
  // user), after the dead worker's lease with a shared database (another worker may be alive).
  if (!s->store_->shared()) s->queued_ = s->store_->RequeueRunning();
  for (int i = 0; i < std::max(1, s->cfg_.workers); ++i) s->threads_.emplace_back([p = s.get()] { p->WorkerLoop(); });
  s->threads_.emplace_back([p = s.get()] { p->LeaseLoop(); });
  s->threads_.emplace_back([p = s.get()] { p->WebhookLoop(); });
  if (!s->cfg_.hot_folder.empty()) {
    if (!s->store_->GetProduct(s->cfg_.hot_folder_product))
      return InvalidArgument("hot folder: product '" + s->cfg_.hot_folder_product + "' does not exist: create it first");
    for (auto sub : {"done", "failed"}) std::filesystem::create_directories(s->cfg_.hot_folder / sub);
    s->threads_.emplace_back([p = s.get()] { p->HotFolderLoop(); });
  }
  s->ready_ = true;
  return s;
}

Service::~Service() {
  stop_ = true;
  work_cv_.notify_all();
  done_cv_.notify_all();
  webhook_cv_.notify_all();
  for (auto& t : threads_) t.join();
  if (store_) store_->ReleaseClaims(worker_id_);  // nothing should be left; if it is, others need not wait for the lease
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the data folder
}

StatusOr<std::string> Service::Submit(NewInspection n, std::string_view bytes) {
  auto id = SubmitChecked(std::move(n), bytes);
  if (!id.ok() && id.status().code() == Code::kNoSpace) StorageFull();
  return id;
}

StatusOr<std::string> Service::SubmitChecked(NewInspection n, std::string_view bytes) {
  if (StorageStillFull()) return NoSpace("the server's disk is full: nothing is accepted until space is freed");
  if (!store_->GetProduct(n.product)) return NotFound("unknown product '" + n.product + "': create it with POST /v1/products");
  // Reserve the queue slot first, atomically: checking then inserting let parallel uploads
  // overshoot --queue. A refused upload gives its slot back. A shared queue is counted in the
  // database plus this process's uploads between that count and their insert (so this process
  // never overshoots; processes racing each other may, by their parallel uploads).
  const int64_t reserved = queued_.fetch_add(1);
  const int64_t submitting = submitting_.fetch_add(1);
  struct Leave {
    std::atomic<int64_t>& n;
    ~Leave() { --n; }
  } leave{submitting_};
  if (store_->shared() ? QueueDepth() + submitting >= cfg_.queue_capacity : reserved >= cfg_.queue_capacity) {
    --queued_;
    return Unavailable("the inspection queue is full (" + std::to_string(cfg_.queue_capacity) + "): retry later");
  }
  auto blob = StoreImage(bytes);
  if (!blob.ok()) return --queued_, blob.status();
  n.image_blob = *blob;
  auto id = store_->Enqueue(n);
  if (!id.ok()) return --queued_, id.status();
  work_cv_.notify_one();
  return id;
}

StatusOr<std::string> Service::StoreImage(std::string_view bytes) {
  // Read through to be sure it is an image, and whole (nothing a decoder would mend: a cut scan, a
  // bad CRC), row by row: parallel uploads of huge images do not each hold their pixels.
  auto format = VerifyImage({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, cfg_.limits);
  if (!format.ok()) return format.status();
  return store_->blobs().Put(bytes, Ext(*format));
}

StatusOr<int64_t> Service::AddReference(const std::string& product, std::string_view bytes, const std::string& filename,
                                         const std::string& actor) {
  auto blob = StoreImage(bytes);
  if (!blob.ok() && blob.status().code() == Code::kNoSpace) StorageFull();
  if (!blob.ok()) return blob.status();
  return store_->AddReference(product, *blob, filename.substr(0, 255), actor);  // engines follow the new version
}

StatusOr<std::vector<int64_t>> Service::AddReferences(const std::string& product,
                                                      const std::vector<std::pair<std::string_view, std::string>>& images_and_names,
                                                      const std::string& actor) {
  std::vector<std::pair<std::string, std::string>> blobs;
  for (const auto& [bytes, name] : images_and_names) {
    auto blob = StoreImage(bytes);
    if (!blob.ok() && blob.status().code() == Code::kNoSpace) StorageFull();
    if (!blob.ok()) return Status(blob.status().code(), (name.empty() ? std::string("an image") : name) + ": " + blob.status().message());
    blobs.emplace_back(*blob, name.substr(0, 255));
  }
  return store_->AddReferences(product, blobs, actor);
}

StatusOr<InspectionResult> Service::Score(const std::string& product, std::string_view bytes) {
  auto known = WaitForEngine(product);
  if (!known.ok()) return known.status();
  const auto& engine = known->engine;
  auto img = DecodeImage({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()},
                         ImageLimits{cfg_.limits.max_pixels, cfg_.limits.max_bytes, engine->DecodeSide()});
  if (!img.ok()) return img.status();
  InspectionResult r = engine->InspectAside(*img).result;
  if (r.error) return InvalidArgument(*r.error);
  return r;
}

bool Service::RemoveReference(const std::string& product, int64_t id, const std::string& actor) {
  return store_->DeleteReference(product, id, actor);
}

StatusOr<int64_t> Service::ReferenceFromInspection(const std::string& inspection, const std::string& actor) {
  auto j = store_->GetInspection(inspection);
  auto blob = store_->InspectionBlob(inspection, false);
  if (!j || !blob) return NotFound("no inspection " + inspection);
  const std::string product = (*j)["product"];
  if (!store_->GetProduct(product)) return NotFound("product '" + product + "' no longer exists");
  // Every pixel, as the engine will read it: an image that got past the upload check but does not
  // decode whole must not become a reference.
  std::ifstream in(store_->blobs().PathOf(*blob), std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), {});
  if (bytes.empty()) return IoError("the image of inspection " + inspection + " cannot be read");
  ImageLimits whole = cfg_.limits;
  whole.check_complete = true;
  auto img = DecodeImage({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, whole);
  if (!img.ok()) return Status(img.status().code(), "the image of inspection " + inspection + " cannot be a reference: " + img.status().message());
  const std::string name = (*j)["image_name"].is_string() && !(*j)["image_name"].get<std::string>().empty() ? (*j)["image_name"].get<std::string>()
                                                                                                            : inspection;
  return store_->AddReference(product, *blob, name.substr(0, 255), actor, {{"from_inspection", inspection}});
}

StatusOr<std::vector<DefectExample>> Service::DescribeDefects(const std::string& inspection,
                                                              std::vector<DefectExample> named) {
  auto j = store_->GetInspection(inspection);
  auto blob = store_->InspectionBlob(inspection, false);
  if (!j || !blob) return NotFound("no inspection " + inspection);
  auto engine = EngineFor((*j)["product"]);
  if (!engine.ok()) return engine.status();
  auto img = LoadImage(store_->blobs().PathOf(*blob), ImageLimits{cfg_.limits.max_pixels, cfg_.limits.max_bytes,
                                                                   engine->engine->DecodeSide()});
  if (!img.ok()) return Status(img.status().code(), "the image of inspection " + inspection + ": " + img.status().message());
  // Every box checked before any is described (each description is a forward pass): a bad last box
  // must not cost the work of all the others first.
  const cv::Size size = img->size();
  for (size_t i = 0; i < named.size(); ++i) {
    const BoundingBox& b = named[i].box;
    if (b.x_min < 0 || b.y_min < 0 || b.x_max > size.width || b.y_max > size.height || b.x_min >= b.x_max || b.y_min >= b.y_max)
      return InvalidArgument("defect " + std::to_string(i + 1) + " ('" + named[i].name + "'): the box must lie within the " +
                             std::to_string(size.width) + "x" + std::to_string(size.height) + " image and have an area");
  }
  for (auto& n : named) {
    auto d = engine->engine->DescribeRegion(*img, n.box);
    if (!d.ok()) {
      if (d.status().code() == Code::kUnsupported)
        return InvalidArgument("product '" + (*j)["product"].get<std::string>() + "' uses the " + engine->engine->name() +
                               " engine, which names defects itself: naming by example needs the patch or cascade engine");
      return Status(d.status().code(), "defect '" + n.name + "': " + d.status().message());
    }
    n.descriptor = std::move(*d);
  }
  return named;
}

StatusOr<Service::EngineAt> Service::WaitForEngine(const std::string& product) {
  if (auto known = Known(product, store_->Revision(product))) return *known;
  if (!TryBeginWait())
    return Unavailable("product '" + product + "': its engine is being built for this version: retry in a few seconds");
  auto built = EngineFor(product);
  EndWait();
  return built;
}

StatusOr<nlohmann::json> Service::Calibration(const std::string& product) {
  const auto engine = WaitForEngine(product);
  if (!engine.ok()) return engine.status();
  nlohmann::json c = engine->engine->Calibration();
  nlohmann::json out = {{"product", product}, {"version", engine->version}, {"engine", engine->engine->name()},
                        {"threshold", nullptr}, {"references", nlohmann::json::array()}};
  // A cascade's threshold and scores are its screen's.
  const nlohmann::json& s = c.is_object() && c.contains("screen") ? c["screen"] : c;
  if (s.is_object()) out["threshold"] = s.value("threshold", nlohmann::json());
  const auto refs = store_->ListReferences(product);
  const nlohmann::json loo = s.is_object() ? s.value("loo_scores", nlohmann::json::array()) : nlohmann::json::array();
  // Each reference's score against the others (leave-one-out), in the order the bank holds them:
  // the references' own. One reference: the scores of its shifted, turned and re-lit copies.
  std::vector<bool> unlike;
  if (loo.size() == refs.size() && out["threshold"].is_number())
    unlike = UnlikeReferences(loo.get<std::vector<double>>(), out["threshold"].get<double>());
  for (size_t i = 0; i < refs.size(); ++i) {
    nlohmann::json ref = {{"id", refs[i].id}, {"filename", refs[i].filename}};
    if (loo.size() == refs.size()) ref["score"] = loo[i];
    if (i < unlike.size()) ref["outlier"] = bool(unlike[i]);  // refs check's rule: the page marks it
    out["references"].push_back(ref);
  }
  if (loo.size() != refs.size()) out["copy_scores"] = loo;
  out["calibration"] = c;
  return out;
}

void Service::NameDefects(const std::string& product, Engine& engine, const Image& image, InspectionResult& r) {
  if (r.error || r.verdict != "NOK" || image.bgr.empty()) return;
  bool any = false;
  for (const auto& o : r.objects) any = any || (o.has_box && o.name == "anomaly");
  if (!any) return;
  const auto examples = store_->DefectExamples(product, true);
  if (examples.empty()) return;
  // As `zeroqc bench --type-shots` measures it (engines/defect_names.h).
  DefectNames names;
  for (const auto& e : examples) names.Add(e.name, e.descriptor, e.id);
  auto p = store_->GetProduct(product);
  double min_similarity = kNamingSimilarity;
  if (p && p->settings.contains("naming") && p->settings["naming"].is_object())
    min_similarity = p->settings["naming"].value("min_similarity", kNamingSimilarity);
  for (auto& o : r.objects) {
    if (!o.has_box || o.name != "anomaly") continue;
    auto d = engine.DescribeRegion(image, o.box);  // one forward pass per region, only for products with examples
    if (!d.ok()) continue;
    const auto m = names.Nearest(*d, min_similarity);
    if (!m) continue;
    o.name = m->name;
    std::string ids;
    for (int64_t id : m->examples) ids += (ids.empty() ? "#" : ", #") + std::to_string(id);
    char sim[32];
    std::snprintf(sim, sizeof sim, "%.2f", m->similarity);
    o.reason += "; like the named example(s) " + ids + " of '" + m->name + "' (similarity " + sim + ")";
  }
}

void Service::MaybeAutoReference(const std::string& inspection, const std::string& product, const InspectionResult& r) {
  if (r.error || r.verdict != "OK" || r.threshold <= 0) return;
  auto p = store_->GetProduct(product);
  if (!p || !p->settings.contains("auto_references")) return;
  const auto& a = p->settings["auto_references"];
  const int max = a.value("max", 0);
  const double margin = a.value("margin", 0.0);
  if (max <= 0 || margin <= 0 || r.score >= margin * r.threshold) return;
  // The rule's only changes are references added: its versions count them.
  const int64_t added = store_->CountVersionsBy(product, kAutoActor);
  if (added >= max) return;
  auto id = ReferenceFromInspection(inspection, kAutoActor);
  if (id.ok())
    log::Info("auto_reference", "product " + product + ": inspection " + inspection + " (score " + std::to_string(r.score) +
                                    ") added to the references automatically (" + std::to_string(added + 1) + " of " + std::to_string(max) + ")",
              {{"product", product}, {"inspection", inspection}, {"score", r.score}, {"threshold", r.threshold}});
}

bool Service::queue_full() { return QueueDepth() >= cfg_.queue_capacity; }

int64_t Service::QueueDepth() { return store_->shared() ? store_->CountByStatus("queued") : queued_.load(); }

bool Service::WaitFor(const std::string& id, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  // Every finished inspection wakes every waiter: each looks at its own row's status only.
  auto finished = [&] {
    auto s = store_->StatusOf(id);
    return s && (*s == "done" || *s == "failed");
  };
  std::unique_lock lock(mu_);
  while (!finished()) {
    // Another serve process may finish it: a shared store is looked at every 100 ms as well.
    const auto until = store_->shared() ? std::min(deadline, std::chrono::steady_clock::now() + std::chrono::milliseconds(100)) : deadline;
    if (stop_ || std::chrono::steady_clock::now() >= deadline) return finished();
    done_cv_.wait_until(lock, until);
  }
  return true;
}

// Refills `b` for the time since its last use (at `rate` per second, up to `burst`) and takes one
// token: 0 when there was one, else the seconds until there will be. REQUIRES: mu_ held.
double Service::TakeToken(Bucket& b, double rate, double burst) {
  const auto now = std::chrono::steady_clock::now();
  b.tokens = std::min(burst, b.tokens + std::chrono::duration<double>(now - b.at).count() * rate);
  b.at = now;
  if (b.tokens >= 1) {
    b.tokens -= 1;
    return 0;
  }
  return (1 - b.tokens) / rate;
}

double Service::RateLimit(int64_t key) {
  std::lock_guard lock(mu_);
  auto it = buckets_.try_emplace(key, Bucket{cfg_.burst, std::chrono::steady_clock::now()}).first;
  return TakeToken(it->second, cfg_.rate_per_second, cfg_.burst);
}

double Service::FailedAuthentication(const std::string& address) {
  std::lock_guard lock(mu_);
  if (auth_buckets_.size() > 100000) auth_buckets_.clear();  // bounded memory under a spread-out attack
  auto it = auth_buckets_.try_emplace(address, Bucket{cfg_.auth_failure_burst, std::chrono::steady_clock::now()}).first;
  return TakeToken(it->second, cfg_.auth_failures_per_second, cfg_.auth_failure_burst);
}

void Service::InvalidateEngine(const std::string& product) {
  std::lock_guard lock(engines_mu_);
  engines_.erase(product);
  failed_builds_.erase(product);
}

std::optional<StatusOr<Service::EngineAt>> Service::Known(const std::string& product, int64_t revision) {
  std::lock_guard lock(engines_mu_);
  if (auto e = engines_.find(product); e != engines_.end() && e->second.revision == revision) return EngineAt{e->second.engine, revision};
  if (auto f = failed_builds_.find(product); f != failed_builds_.end() && f->second.revision == revision) return f->second.status;
  return std::nullopt;
}

Status Service::Failed(const std::string& product, int64_t revision, Status why) {
  std::lock_guard lock(engines_mu_);
  failed_builds_[product] = {revision, why};
  return why;
}

StatusOr<Service::EngineAt> Service::EngineFor(const std::string& name) {
  // One small query per job: a product changed through any serve process is rebuilt here once.
  const int64_t revision = store_->Revision(name);
  if (auto known = Known(name, revision)) return *known;
  std::shared_ptr<std::mutex> build_mu;
  {
    std::lock_guard lock(engines_mu_);
    auto& m = build_mu_[name];
    if (!m) m = std::make_shared<std::mutex>();
    build_mu = m;
  }
  std::lock_guard building(*build_mu);  // workers wanting the same product wait for one build
  if (auto known = Known(name, revision)) return *known;  // built, or failed, while this one waited
  std::optional<BuiltEngine> have;  // an earlier version's engine, perhaps one reference behind
  {
    std::lock_guard lock(engines_mu_);
    if (auto it = engines_.find(name); it != engines_.end()) have = it->second;
  }
  const auto t0 = std::chrono::steady_clock::now();
  // The one change since the engine we have is a reference added: derived from it incrementally.
  // The new engine replaces the old one at once; inspections running on the old one finish on it.
  if (have && have->revision + 1 == revision) {
    auto change = store_->VersionChange(name, revision);
    const auto refs = store_->ListReferences(name);
    if (change && change->value("op", "") == "add_reference" && !refs.empty() && refs.back().id == change->value("reference", int64_t(-1))) {
      auto e = have->engine->WithReference(store_->blobs().PathOf(refs.back().blob));
      if (e.ok()) {
        std::shared_ptr<Engine> engine = std::move(*e);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const auto calibration = engine->Calibration();
        log::Info("engine_updated", "product " + name + ": reference added to the engine in " + std::to_string(int(1000 * s)) + " ms (version " +
                                        std::to_string(revision) + ")",
                  {{"product", name}, {"version", revision}, {"duration_ms", 1000 * s},
                   {"threshold", calibration.is_object() ? calibration.value("threshold", nlohmann::json()) : nlohmann::json()}});
        std::lock_guard lock(engines_mu_);
        engines_[name] = {revision, engine};
        return EngineAt{engine, revision};
      }
    }
  }
  auto product = store_->GetProduct(name);
  if (!product) return NotFound("product '" + name + "' no longer exists");
  std::vector<std::filesystem::path> refs;
  for (const auto& r : store_->ListReferences(name)) refs.push_back(store_->blobs().PathOf(r.blob));
  if (refs.empty()) return Failed(name, revision, InvalidArgument("product '" + name + "' has no reference images: add photos of good parts"));
  // A first inspection waits for the build (tens of seconds with many references): say so.
  log::Info("engine_build_started",
            "product " + name + ": building the " + product->engine + " engine from " + std::to_string(refs.size()) + " reference(s)",
            {{"product", name}, {"engine", product->engine}, {"references", refs.size()}});
  auto e = cfg_.make_engine(*product, refs);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!e.ok()) {
    log::Error("engine_build_failed", "product " + name + ": the engine cannot be built: " + e.status().message(),
               {{"product", name}, {"engine", product->engine}, {"duration_ms", 1000 * s}, {"error", e.status().message()}});
    return Failed(name, revision,
                  Status(e.status().code(), "product '" + name + "' (version " + std::to_string(revision) +
                                                "): the engine cannot be built: " + e.status().message()));
  }
  std::shared_ptr<Engine> engine = std::move(*e);
  const auto calibration = engine->Calibration();
  const nlohmann::json threshold = calibration.is_object() ? calibration.value("threshold", nlohmann::json()) : nlohmann::json();
  char text[160];
  std::snprintf(text, sizeof text, "product %s: engine built in %.1f s from %zu reference(s)", name.c_str(), s, refs.size());
  log::Info("engine_built", text,
            {{"product", name}, {"engine", product->engine}, {"references", refs.size()}, {"duration_ms", 1000 * s}, {"threshold", threshold}});
  {
    std::lock_guard lock(metrics_mu_);
    engine_build_seconds_.Add(s);
  }
  std::lock_guard lock(engines_mu_);
  engines_[name] = {revision, engine};
  return EngineAt{engine, revision};
}

namespace {
int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

void Service::StorageFull() {
  storage_full_ = true;
  storage_full_at_ms_ = NowMs();
  if (NowMs() - storage_warned_at_ms_.exchange(NowMs()) < 10000) return;
  log::Error("disk_full", std::string(cfg_.db_url.empty() ? "the data folder's disk" : "the database's disk") +
                              " is full: uploads get 507, /readyz says not ready and queued work waits until space is freed");
}

bool Service::StorageStillFull() {
  if (!storage_full_) return false;
  const int64_t since = NowMs() - storage_full_at_ms_;
  bool back = since >= 5000;
  if (cfg_.db_url.empty() && since >= 500) {
    struct statvfs fs{};
    back = statvfs(cfg_.data_dir.c_str(), &fs) == 0 && int64_t(fs.f_bavail) * int64_t(fs.f_frsize) >= (1 << 20);
  }
  if (back && storage_full_.exchange(false)) log::Info("disk_space_back", "storage has room again: accepting uploads and resuming work");
  return !back;
}

void Service::WorkerLoop() {
  // Claims past this many mean the image itself kills its worker (or it keeps being killed): it
  // is failed instead of taking every worker down in turn.
  constexpr int kMaxClaims = 3;
  while (!stop_) {
    if (StorageStillFull()) {  // nothing could be stored: a claim would fail, or its result would
      std::unique_lock lock(mu_);
      work_cv_.wait_for(lock, std::chrono::milliseconds(250), [&] { return stop_.load(); });
      continue;
    }
    auto item = store_->ClaimNext(worker_id_, cfg_.lease_seconds);
    if (!item) {
      if (store_->shared()) queued_ = 0;  // other processes' workers took this one's uploads
      std::unique_lock lock(mu_);
      // Uploads to other serve processes wake nobody here: a shared queue is polled every 100 ms.
      work_cv_.wait_for(lock, std::chrono::milliseconds(store_->shared() ? 100 : 500),
                        [&] { return stop_.load() || queued_.load() > 0; });
      continue;
    }
    if (queued_.load() > 0) --queued_;
    if (item->claims > 1) {
      log::Warn("inspection_reclaimed",
                "inspection " + item->id + " claimed again (claim " + std::to_string(item->claims) + "): its worker stopped or its lease expired",
                {{"inspection", item->id}, {"claims", item->claims}, {"worker", worker_id_}});
      std::lock_guard lock(metrics_mu_);
      ++reclaimed_;
    }
    if (item->claims > kMaxClaims) {
      InspectionResult r;
      r.image_path = item->image_name;
      r.error = "the worker judging this image stopped " + std::to_string(item->claims - 1) + " times; it is not tried again";
      (void)store_->Finish(item->id, worker_id_, r, "");
    } else {
      Process(*item);
    }
    NotifyFinished();
  }
}

void Service::NotifyFinished() {
  { std::lock_guard lock(mu_); }  // a waiter between its status check and its wait cannot miss this
  done_cv_.notify_all();
  webhook_cv_.notify_one();
}

void Service::Process(const WorkItem& item) {
  const auto t0 = std::chrono::steady_clock::now();
  Inspection insp;
  Image img;
  auto engine = EngineFor(item.product);
  int64_t version = 0;
  if (!engine.ok()) {
    insp.result.image_path = item.image_name;
    insp.result.error = engine.status().message();
  } else {
    version = engine->version;
    insp = InspectFile(*engine->engine, store_->blobs().PathOf(item.image_blob), cfg_.limits, &img);
    insp.result.image_path = item.image_name;  // the client's name, not our blob path
    NameDefects(item.product, *engine->engine, img, insp.result);
  }
  FinishJudged(item.id, item.product, img, insp, version, t0);
}

bool Service::FinishJudged(const std::string& id, const std::string& product, const Image& img, const Inspection& insp, int64_t version,
                           std::chrono::steady_clock::time_point t0) {
  std::string overlay;
  if (!img.bgr.empty()) {
    std::vector<uint8_t> jpg;
    cv::imencode(".jpg", DrawOverlay(img.bgr, insp.heatmap, insp.result), jpg, {cv::IMWRITE_JPEG_QUALITY, 85});
    if (auto b = store_->blobs().Put({reinterpret_cast<const char*>(jpg.data()), jpg.size()}, "jpg"); b.ok()) overlay = *b;
    else if (b.status().code() == Code::kNoSpace) StorageFull();
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  Status f = store_->Finish(id, worker_id_, insp.result, overlay, version);
  // A full disk: the result is kept here and stored once there is room (the claim is this worker's
  // still; were it taken meanwhile, the store says so below and the other worker's result counts).
  for (bool said = false; f.code() == Code::kNoSpace && !stop_; f = store_->Finish(id, worker_id_, insp.result, overlay, version)) {
    StorageFull();
    if (!said) log::Error("disk_full", "inspection " + id + ": its result waits in memory until the disk has room", {{"inspection", id}});
    said = true;
    while (StorageStillFull() && !stop_) std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  if (!f.ok()) {
    log::Warn(f.code() == Code::kUnavailable ? "lease_lost" : "finish_failed", "inspection " + id + ": result not stored: " + f.message(),
              {{"inspection", id}, {"product", product}, {"worker", worker_id_}, {"error", f.message()}});
    std::lock_guard lock(metrics_mu_);
    ++leases_lost_;
    return false;
  }
  {
    std::lock_guard lock(hook_mu_);
    if (on_finished_) on_finished_(id);
  }
  MaybeAutoReference(id, product, insp.result);
  const auto& r = insp.result;
  nlohmann::json fields = {{"inspection", id}, {"product", product}, {"duration_ms", 1000 * s}};
  if (r.error) {
    fields["error"] = *r.error;
    log::Warn("inspection_failed", "inspection " + id + " (product " + product + ") failed: " + *r.error, fields);
  } else {
    fields["verdict"] = r.verdict, fields["score"] = r.score, fields["threshold"] = r.threshold, fields["objects"] = r.objects.size();
    char text[200];
    std::snprintf(text, sizeof text, "inspection %s (product %s): %s, score %.3f / %.3f, %zu object(s), %.0f ms", id.c_str(), product.c_str(),
                  r.verdict.c_str(), r.score, r.threshold, r.objects.size(), 1000 * s);
    log::Info("inspection_finished", text, fields);
  }
  std::lock_guard lock(metrics_mu_);
  ++verdicts_[insp.result.error ? "error" : insp.result.verdict];
  inspection_seconds_.Add(s);
  return true;
}

StatusOr<Service::Judged> Service::InspectNow(const std::string& product, const Image& image) {
  auto engine = EngineFor(product);
  if (!engine.ok()) return engine.status();
  Judged j{engine->engine->Inspect(image), engine->version};
  NameDefects(product, *engine->engine, image, j.inspection.result);
  return j;
}

StatusOr<std::string> Service::Record(NewInspection n, const Image& image, const Inspection& insp, int64_t version) {
  const auto t0 = std::chrono::steady_clock::now();
  if (!image.bgr.empty()) {  // lossless: a part an operator confirms may become a reference
    std::vector<uint8_t> png;
    if (!cv::imencode(".png", image.bgr, png)) return Internal("the frame cannot be encoded as PNG");
    auto blob = store_->blobs().Put({reinterpret_cast<const char*>(png.data()), png.size()}, "png");
    if (!blob.ok()) {
      if (blob.status().code() == Code::kNoSpace) StorageFull();
      return blob.status();
    }
    n.image_blob = *blob;
  }
  auto id = store_->Enqueue(n, worker_id_, cfg_.lease_seconds);
  if (!id.ok()) return id.status();
  if (!FinishJudged(*id, n.product, image, insp, version, t0)) return Unavailable("inspection " + *id + ": its result was not stored");
  NotifyFinished();
  return *id;
}

void Service::LeaseLoop() {
  const auto every = std::chrono::milliseconds(std::max(200, cfg_.lease_seconds * 1000 / 3));
  while (!stop_) {
    store_->RenewLeases(worker_id_, cfg_.lease_seconds);
    std::unique_lock lock(mu_);
    work_cv_.wait_for(lock, every, [&] { return stop_.load(); });
  }
}

void Service::Histogram::Add(double seconds) {
  if (buckets.empty()) buckets.assign(std::size(kLatencyBounds), 0);
  for (size_t i = 0; i < std::size(kLatencyBounds); ++i)
    if (seconds <= kLatencyBounds[i]) ++buckets[i];
  sum += seconds;
  ++count;
}

void Service::Histogram::Write(std::ostream& m, const std::string& name, const std::string& help) const {
  m << "# HELP " << name << " " << help << "\n# TYPE " << name << " histogram\n";
  for (size_t i = 0; i < std::size(kLatencyBounds); ++i)
    m << name << "_bucket{le=\"" << kLatencyBounds[i] << "\"} " << (buckets.empty() ? 0 : buckets[i]) << "\n";
  m << name << "_bucket{le=\"+Inf\"} " << count << "\n" << name << "_sum " << sum << "\n" << name << "_count " << count << "\n";
}

void Service::WebhookLoop() {
  while (!stop_) {
    for (const auto& d : store_->DueDeliveries(16)) {
      auto j = store_->GetInspection(d.inspection);
      if (!j) {
        store_->DeliveryFailed(d.id, "inspection vanished", 0, 0);
        continue;
      }
      const std::string body = nlohmann::json({{"event", "inspection.finished"}, {"inspection", *j}}).dump();
      auto r = HttpPost(d.url, {{"Content-Type", "application/json"}, {"X-Zeroqc-Event", "inspection.finished"},
                                {"X-Zeroqc-Delivery", std::to_string(d.id)}, {"X-Zeroqc-Signature", "sha256=" + WebhookSignature(d.secret, body)}},
                        body, cfg_.webhook_timeout_ms, cfg_.allow_private_webhooks);
      if (r.error.empty() && r.status >= 200 && r.status < 300) {
        store_->DeliveryDone(d.id);
      } else {
        const std::string why = r.error.empty() ? "HTTP " + std::to_string(r.status) : r.error;
        const bool last = d.attempts + 1 >= cfg_.webhook_attempts;
        log::Warn(last ? "webhook_dead_letter" : "webhook_failed",
                  "webhook for inspection " + d.inspection + " failed (" + why + "), attempt " + std::to_string(d.attempts + 1) +
                      " of " + std::to_string(cfg_.webhook_attempts) + (last ? ": given up, in the dead-letter list" : ": will retry"),
                  {{"inspection", d.inspection}, {"delivery", d.id}, {"attempt", d.attempts + 1}, {"error", why}});
        store_->DeliveryFailed(d.id, why, cfg_.webhook_attempts, cfg_.webhook_backoff_ms * (1 << std::min(d.attempts, 16)));
      }
    }
    std::unique_lock lock(mu_);
    webhook_cv_.wait_for(lock, std::chrono::milliseconds(200));
  }
}

void Service::CountRequest(const std::string& route, int status, double seconds) {
  std::lock_guard lock(metrics_mu_);
  ++requests_[{route, status}];
  request_seconds_.Add(seconds);
}

std::string Service::MetricsText() {
  std::ostringstream m;
  std::lock_guard lock(metrics_mu_);
  m << "# HELP zeroqc_http_requests_total HTTP requests by route and status.\n# TYPE zeroqc_http_requests_total counter\n";
  for (const auto& [k, v] : requests_)
    m << "zeroqc_http_requests_total{route=\"" << k.first << "\",code=\"" << k.second << "\"} " << v << "\n";
  m << "# HELP zeroqc_inspections_total Finished inspections by verdict.\n# TYPE zeroqc_inspections_total counter\n";
  for (const auto& [k, v] : verdicts_) m << "zeroqc_inspections_total{verdict=\"" << k << "\"} " << v << "\n";
  inspection_seconds_.Write(m, "zeroqc_inspection_duration_seconds", "Time from claim to stored result.");
  engine_build_seconds_.Write(m, "zeroqc_engine_build_duration_seconds", "Time to build a product's engine (memory bank and calibration).");
  request_seconds_.Write(m, "zeroqc_http_request_duration_seconds", "HTTP request latency, all routes.");
  m << "# HELP zeroqc_queue_depth Inspections waiting for a worker.\n# TYPE zeroqc_queue_depth gauge\nzeroqc_queue_depth "
    << QueueDepth() << "\n";
  m << "# HELP zeroqc_queue_oldest_seconds Age of the oldest queued inspection.\n# TYPE zeroqc_queue_oldest_seconds gauge\n"
       "zeroqc_queue_oldest_seconds "
    << store_->OldestQueuedSeconds() << "\n";
  m << "# HELP zeroqc_inspections_reclaimed_total Inspections this process claimed after another worker stopped or its lease expired.\n"
       "# TYPE zeroqc_inspections_reclaimed_total counter\nzeroqc_inspections_reclaimed_total "
    << reclaimed_ << "\n";
  m << "# HELP zeroqc_leases_lost_total Results this process dropped because its lease had expired and another worker took the job.\n"
       "# TYPE zeroqc_leases_lost_total counter\nzeroqc_leases_lost_total "
    << leases_lost_ << "\n";
  m << "# HELP zeroqc_webhook_dead_letters Webhook deliveries that gave up.\n# TYPE zeroqc_webhook_dead_letters gauge\n"
       "zeroqc_webhook_dead_letters "
    << store_->CountDeadLetters() << "\n";
  if (auto* station = station_.load()) station->WriteMetrics(m);
  return m.str();
}

}  // namespace zeroqc
