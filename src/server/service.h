// The inspection service behind the HTTP API: the durable queue's workers, engines per product
// (rebuilt when references change), rate limits, counters for /metrics, webhook delivery and the
// hot-folder ingest. Knows nothing of HTTP.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <ostream>
#include <string_view>
#include <thread>

#include "engines/engine.h"
#include "server/store.h"

namespace zeroqc {

// Builds the engine of a product from its settings and reference files.
using ProductEngineFactory =
    std::function<StatusOr<std::unique_ptr<Engine>>(const Product&, const std::vector<std::filesystem::path>& refs)>;

struct ServiceConfig {
  std::filesystem::path data_dir;  // with db_url: this worker's engine and blob cache
  std::string db_url;              // empty: SQLite in data_dir; else PostgreSQL shared by many serve processes
  int lease_seconds = 30;          // a claimed inspection returns to the queue this long after its worker stops renewing
  int workers = 1;
  int queue_capacity = 64;        // queued inspections beyond this get 503
  // ?wait=true requests held open at once; each holds one of the HTTP server's 8 threads, so more
  // would starve /healthz and every other route. Past it a request gets 202 + Location at once.
  int max_waiters = 4;
  double rate_per_second = 10;    // per API key, token bucket
  double burst = 20;
  double auth_failures_per_second = 1;  // per client address, after a burst of auth_failure_burst
  double auth_failure_burst = 10;
  ImageLimits limits;             // per upload: bytes and pixels (413 beyond)
  int webhook_attempts = 5;
  int webhook_backoff_ms = 1000;  // doubles per attempt
  int webhook_timeout_ms = 10000;
  bool allow_private_webhooks = false;  // webhooks to loopback, private and link-local addresses
  bool allow_private_models = false;    // a product's base_url there (Ollama on this machine needs it)
  std::filesystem::path hot_folder;  // empty: no hot-folder ingest
  std::string hot_folder_product;
  ProductEngineFactory make_engine;
  // Backbones a product's settings may name, and the one a new patch or cascade product is given
  // (written into its settings, so that its bank keeps its backbone when the server's default changes).
  std::vector<std::string> backbones;
  std::string default_backbone;
};

class Service {
 public:
  static constexpr const char* kAutoActor = "auto_references";  // the actor of references added by the auto rule
  static StatusOr<std::unique_ptr<Service>> Start(ServiceConfig config);
  ~Service();  // stops workers (the queue stays durable in the store)

  Store& store() { return *store_; }
  const ServiceConfig& config() const { return cfg_; }

  // Accepts an upload: checks it decodes within the limits, stores the image, queues the work.
  // Errors: kTooLarge (413), kCorrupt/kUnsupported (415/422), kNotFound (unknown product), kInternal.
  // kUnavailable when the queue is full (503).
  StatusOr<std::string> Submit(NewInspection n, std::string_view image_bytes);
  bool queue_full();
  // A waiting slot (see ServiceConfig::max_waiters): true if taken; give it back with EndWait.
  bool TryBeginWait() {
    if (waiters_.fetch_add(1) < cfg_.max_waiters) return true;
    --waiters_;
    return false;
  }
  void EndWait() { --waiters_; }
  // Blocks until the inspection is done or failed, or the timeout passes; true when finished.
  bool WaitFor(const std::string& id, std::chrono::milliseconds timeout);

  // Token bucket per key; returns 0 when allowed, else the seconds to wait.
  double RateLimit(int64_t key_id);
  // Counts a failed authentication from `address` (a token bucket per address); returns 0 while
  // allowed, else the seconds to wait: key guessing is slowed to auth_failures_per_second.
  double FailedAuthentication(const std::string& address);

  // Reference images of a product: checked like uploads, stored, and the product's engine rebuilt
  // on its next inspection.
  StatusOr<int64_t> AddReference(const std::string& product, std::string_view image_bytes, const std::string& filename,
                                 const std::string& actor = "");
  // Several at once, as one version: every image is checked and stored before any is added, and the
  // error names the file that failed.
  StatusOr<std::vector<int64_t>> AddReferences(const std::string& product,
                                               const std::vector<std::pair<std::string_view, std::string>>& images_and_names,
                                               const std::string& actor = "");
  bool RemoveReference(const std::string& product, int64_t id, const std::string& actor = "");
  // Judges an image with the product's current engine, by its references alone, and stores nothing
  // (a setup check: known good and defective photos against the threshold). Waits for an engine
  // build like Calibration.
  StatusOr<InspectionResult> Score(const std::string& product, std::string_view image_bytes);
  // A reviewed good part joins its product's references (a new version). Its stored image is
  // decoded in full first: one that does not decode is refused (kCorrupt, ...) and nothing changes.
  // Engines that can (the embedded one) take it incrementally: one feature extraction, not a rebuild.
  StatusOr<int64_t> ReferenceFromInspection(const std::string& inspection, const std::string& actor);

  // Describes the regions an operator named on an inspection's image (DefectExample::box and name
  // given), with the product's engine: kInvalidArgument for a box outside the image or an engine
  // without region descriptors (vlm). Nothing is stored.
  StatusOr<std::vector<DefectExample>> DescribeDefects(const std::string& inspection, std::vector<DefectExample> named);
  // A NOK region is named after the product's named examples it resembles most (cosine to the mean
  // of each name's examples) when the similarity reaches settings.naming.min_similarity (default
  // kNamingSimilarity); the rest stay "anomaly".
  static constexpr double kNamingSimilarity = 0.5;
  // The engine of the product's current version (built if need be), its threshold and each
  // reference's own score: {product, version, engine, threshold, references: [{id, filename, score}], calibration}.
  StatusOr<nlohmann::json> Calibration(const std::string& product);

  // A frame judged at once by the product's engine (built first if need be), outside the queue: a
  // station's parts, whose results the PLC waits for. Defects are named as in the queue.
  struct Judged {
    Inspection inspection;
    int64_t version;  // the product version whose engine judged it
  };
  StatusOr<Judged> InspectNow(const std::string& product, const Image& image);
  // Builds the product's engine now if its version changed (a station, idle, before its next part).
  Status Prepare(const std::string& product) { return EngineFor(product).status(); }
  // Stores a part judged outside the queue as any inspection (its frame as PNG, the overlay, the
  // webhook delivery, the MQTT hook, the metrics, auto references): its id. An error result may
  // come without a frame (image.bgr empty).
  StatusOr<std::string> Record(NewInspection n, const Image& image, const Inspection& inspection, int64_t version);

  // A station this process runs (serve --station): its state for /v1/station and /metrics.
  struct StationView {
    virtual ~StationView() = default;
    virtual nlohmann::json State() = 0;
    virtual std::string LastFrameJpeg() = 0;  // empty: no frame yet
    virtual void WriteMetrics(std::ostream& out) = 0;
    virtual bool Fire() = 0;  // a software trigger; false when the station has another source
  };
  void Attach(StationView* station) { station_ = station; }
  StationView* station() { return station_; }

  // The product was edited: its engine is rebuilt on next use.
  void InvalidateEngine(const std::string& product);

  // Called with the id of every inspection this process finishes (after it is stored); nullptr
  // removes it. One hook (the MQTT bridge).
  void OnFinished(std::function<void(const std::string&)> hook) {
    std::lock_guard lock(hook_mu_);
    on_finished_ = std::move(hook);
  }

  std::string MetricsText();
  void CountRequest(const std::string& route, int status, double seconds);
  // Started, and storage not full.
  bool ready() { return ready_.load() && !StorageStillFull(); }
  // The disk (or the database's) is full: uploads get 507, readiness is off and workers pause (a
  // result that could not be stored is kept and stored again) until space returns: 1 MB free in
  // the data folder (SQLite), or 5 s later (PostgreSQL: the next write tells).
  void StorageFull();

 private:
  explicit Service(ServiceConfig c) : cfg_(std::move(c)) {}
  // Checks that the bytes decode within the limits and stores them: the blob name.
  StatusOr<std::string> StoreImage(std::string_view bytes);
  void WorkerLoop();
  void LeaseLoop();
  // Queued inspections: counted here for one process, in the database when it is shared.
  int64_t QueueDepth();
  void Process(const WorkItem& item);
  // Stores a judged inspection this worker holds and tells everyone (hooks, log, metrics); false
  // when it could not be stored (the claim was lost).
  bool FinishJudged(const std::string& id, const std::string& product, const Image& img, const Inspection& insp, int64_t version,
                    std::chrono::steady_clock::time_point t0);
  // Wakes ?wait=true waiters and the webhook sender: an inspection finished.
  void NotifyFinished();
  std::atomic<StationView*> station_{nullptr};
  struct EngineAt {
    std::shared_ptr<Engine> engine;
    int64_t version;  // the product version it was built from
  };
  StatusOr<EngineAt> EngineFor(const std::string& product);
  // For a caller that must not make the server build: a built engine answers at once, a failed
  // build repeats its error until the product changes, and otherwise the caller waits for the one
  // build in one of the few waiting slots (the HTTP workers stay free), or gets kUnavailable.
  StatusOr<EngineAt> WaitForEngine(const std::string& product);
  // auto_references: an OK part scoring below margin x threshold joins the references (up to max).
  void MaybeAutoReference(const std::string& inspection, const std::string& product, const InspectionResult& r);
  void NameDefects(const std::string& product, Engine& engine, const Image& image, InspectionResult& r);
  void WebhookLoop();
  void HotFolderLoop();

  ServiceConfig cfg_;
  int lock_fd_ = -1;  // flock on data_dir/serve.lock, held for the service's life
  std::unique_ptr<Store> store_;
  std::atomic<int64_t> queued_{0};
  std::atomic<int64_t> submitting_{0};  // uploads between the queue check and their insert
  std::atomic<int> waiters_{0};
  std::atomic<bool> stop_{false}, ready_{false};
  bool StorageStillFull();
  StatusOr<std::string> SubmitChecked(NewInspection n, std::string_view image_bytes);
  std::atomic<bool> storage_full_{false};
  std::atomic<int64_t> storage_full_at_ms_{0}, storage_warned_at_ms_{0};
  std::mutex mu_;
  std::condition_variable work_cv_, done_cv_, webhook_cv_;
  std::vector<std::thread> threads_;
  std::mutex hook_mu_;
  std::function<void(const std::string&)> on_finished_;
  std::string worker_id_;  // host:pid:random, recorded on every inspection this process judges
  struct BuiltEngine {
    int64_t revision;
    std::shared_ptr<Engine> engine;
  };
  std::map<std::string, BuiltEngine> engines_;
  struct FailedBuild {
    int64_t revision;
    Status status;
  };
  std::map<std::string, FailedBuild> failed_builds_;
  // The engine built for `revision`, or the status of its failed build; nullopt: neither yet.
  std::optional<StatusOr<EngineAt>> Known(const std::string& product, int64_t revision);
  Status Failed(const std::string& product, int64_t revision, Status why);  // remembers it; returns it  // repeated until the product changes: never rebuilt on demand
  std::map<std::string, std::shared_ptr<std::mutex>> build_mu_;  // one build per product at a time
  std::mutex engines_mu_;
  struct Bucket {
    double tokens;
    std::chrono::steady_clock::time_point at;
  };
  double TakeToken(Bucket& b, double rate, double burst);
  std::map<int64_t, Bucket> buckets_;
  std::map<std::string, Bucket> auth_buckets_;
  // /metrics
  std::mutex metrics_mu_;
  std::map<std::pair<std::string, int>, int64_t> requests_;
  std::map<std::string, int64_t> verdicts_;
  int64_t reclaimed_ = 0, leases_lost_ = 0;
  struct Histogram {
    std::vector<int64_t> buckets;  // cumulative counts per kLatencyBounds
    double sum = 0;
    int64_t count = 0;
    void Add(double seconds);
    void Write(std::ostream& out, const std::string& name, const std::string& help) const;
  };
  Histogram inspection_seconds_, request_seconds_, engine_build_seconds_;
};

// HMAC-SHA256 of a webhook body, lower-case hex: the X-Zeroqc-Signature header is "sha256=<this>".
std::string WebhookSignature(const std::string& secret, const std::string& body);

}  // namespace zeroqc
