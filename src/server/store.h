// The service's durable state: products and their references, inspections (which are also the work
// queue: status queued -> running -> done | failed), defects, reviews, API keys and webhook
// deliveries. In SQLite (WAL; one serve process per data folder) or in PostgreSQL (any number of
// serve processes: workers claim inspections with a lease they renew, and a job whose worker died
// is claimed again when its lease runs out). Schema migrations are numbered and applied at open.
// Thread-safe: one connection behind a mutex.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/result.h"
#include "server/blobs.h"
#include "server/db.h"

namespace zeroqc {

enum class Scope { kRead = 0, kWrite = 1, kAdmin = 2 };
StatusOr<Scope> ParseScope(const std::string& s);
const char* ScopeName(Scope s);

struct ApiKey {
  int64_t id;
  Scope scope;
  std::string name;
};

// A key as listed: never the key itself (only its hash is stored).
struct KeyInfo {
  int64_t id;
  Scope scope;
  std::string name, created_at, revoked_at;  // revoked_at empty: in use
};

struct Product {
  std::string name;
  std::string engine = "patch";
  nlohmann::json settings = nlohmann::json::object();  // engine settings (threshold, vlm provider/model/profile...)
  std::string webhook_url, webhook_secret;
};

struct Reference {
  int64_t id;
  std::string blob, filename;
};

// A defect region an operator named in a review: later NOK regions like it get its name.
struct DefectExample {
  int64_t id = 0;
  std::string name, inspection;
  BoundingBox box;                // in the inspection's image, original pixels
  std::vector<float> descriptor;  // Engine::DescribeRegion
  std::string created_at, actor;
};
nlohmann::json DefectExampleJson(const DefectExample& e);  // without the descriptor

struct NewInspection {
  std::string product, batch, part_id, station, image_blob, image_name;
  nlohmann::json metadata = nlohmann::json::object();
};

struct InspectionFilter {
  std::string product, verdict, since;  // since: ISO-8601 UTC, inclusive
  int limit = 50;
  int64_t before_seq = 0;  // paging cursor: rows older than this; 0 = newest first
};

struct Delivery {
  int64_t id;
  std::string inspection, url, secret;
  int attempts;
};

struct WorkItem {
  std::string id, product, image_blob, image_name;
  int claims = 1;  // how often it has been claimed: more than once after a worker stopped or died
};

class Store {
 public:
  static constexpr int kSchemaVersion = 6;
  // `db_url` empty: SQLite in data_dir; else a PostgreSQL URL, and data_dir caches blobs.
  static StatusOr<std::unique_ptr<Store>> Open(const std::filesystem::path& data_dir, const std::string& db_url = "");

  // True for PostgreSQL: other serve processes may be using the same database.
  bool shared() const { return db_->dialect() == Dialect::kPostgres; }
  BlobStore& blobs() { return *blobs_; }
  int schema_version();

  // Keys are shown once; only their SHA-256 is kept.
  StatusOr<std::string> CreateKey(Scope scope, const std::string& name, int64_t* id = nullptr);
  // No key (unknown or revoked): nullopt. kUnavailable: the database did not answer, which says
  // nothing about the key.
  StatusOr<std::optional<ApiKey>> FindKey(const std::string& token);
  std::vector<KeyInfo> ListKeys();  // oldest first, revoked ones too
  // kNotFound: no such key, or revoked already. kConflict: it is the last admin key in
  // use, and nobody could manage the service after it.
  Status RevokeKey(int64_t id);

  // Creates or changes a product; every change is a new numbered version made by `actor`. A
  // retired product's name starts again as a new product: no references, its history kept.
  // `reason`, when given, is recorded in the version (why a threshold was set by hand).
  Status PutProduct(const Product& p, const std::string& actor = "", const std::string& reason = "");
  // Retires a product: gone from the lists and from inspection, its inspections and versions kept.
  // kNotFound when there is no such product in use.
  Status RetireProduct(const std::string& name, const std::string& actor);
  std::optional<Product> GetProduct(const std::string& name);  // in use only, not retired
  std::vector<Product> ListProducts();
  // `why` is merged into the version's change record (e.g. {"from_inspection": id}). With a
  // from_inspection that is already a current reference of the product: kConflict.
  // Several references as one version ({"op": "add_references"}): all or none. Their ids, in order.
  StatusOr<std::vector<int64_t>> AddReferences(const std::string& product, const std::vector<std::pair<std::string, std::string>>& blobs_and_names,
                                               const std::string& actor);
  StatusOr<int64_t> AddReference(const std::string& product, const std::string& blob, const std::string& filename,
                                 const std::string& actor = "", const nlohmann::json& why = nullptr);
  std::vector<Reference> ListReferences(const std::string& product);  // the current ones
  int64_t CountVersionsBy(const std::string& product, const std::string& actor);
  bool DeleteReference(const std::string& product, int64_t id, const std::string& actor = "");
  // Versions, newest first: {version, created_at, actor, change, engine, settings, references}.
  nlohmann::json Versions(const std::string& product);
  std::optional<nlohmann::json> VersionChange(const std::string& product, int64_t version);
  // Restores a version's engine, settings and references as a new version; returns its number.
  // kNotFound for an unknown version.
  StatusOr<int64_t> Rollback(const std::string& product, int64_t version, const std::string& actor);
  // Grows with every change of the product or its references: a worker whose engine was built at
  // an older revision rebuilds it (changes made through any serve process reach every worker).
  // It is also the product's current version number (GET /v1/products/{name}/versions).
  int64_t Revision(const std::string& product);

  // Persists a queued inspection (durable when this returns) and gives its id. With `claimed_by`,
  // it is stored already running under that worker's lease (a station judges its own frames at
  // once); should the worker die before Finish, the lease runs out and the stored image is queued.
  StatusOr<std::string> Enqueue(const NewInspection& n, const std::string& claimed_by = "", int lease_seconds = 0);
  // Claims the oldest queued inspection (or one whose lease expired) for `worker`, leased for
  // `lease_seconds`; nullopt when there is none.
  std::optional<WorkItem> ClaimNext(const std::string& worker, int lease_seconds);
  // Extends the leases of everything `worker` is running; returns how many.
  int64_t RenewLeases(const std::string& worker, int lease_seconds);
  // Stores the result, if `worker` still holds the claim (kUnavailable otherwise: another worker
  // took the job over and its result counts). The webhook delivery is queued in the same transaction.
  // `reference_version`: the product version whose engine judged it (0: none, e.g. no engine).
  Status Finish(const std::string& id, const std::string& worker, const InspectionResult& r, const std::string& overlay_blob,
                int64_t reference_version = 0);
  // SQLite after a restart: work that was running when the process died is queued again (no other
  // process can be running it). Returns the queued count.
  int64_t RequeueRunning();
  // A worker stopping cleanly hands back what it had claimed.
  void ReleaseClaims(const std::string& worker);
  double OldestQueuedSeconds();  // age of the oldest queued inspection, 0 when none
  int64_t CountByStatus(const std::string& status);
  std::optional<nlohmann::json> GetInspection(const std::string& id);
  std::optional<std::string> StatusOf(const std::string& id);  // queued, running, done or failed
  // The blob of an inspection's uploaded image or its overlay.
  std::optional<std::string> InspectionBlob(const std::string& id, bool overlay);
  nlohmann::json ListInspections(const InspectionFilter& f);  // {items, next_cursor}
  // With the defect examples the review names (of `product`), in one transaction.
  Status AddReview(const std::string& id, const std::string& verdict, const std::string& comment, const std::string& reviewer,
                   const std::string& product = "", const std::vector<DefectExample>& examples = {});
  // The product's current examples, oldest first; descriptors only when asked (they are large).
  std::vector<DefectExample> DefectExamples(const std::string& product, bool with_descriptors);
  // Retires an example (kept for the record: inspections it named still say so); false if none.
  bool RemoveDefectExample(const std::string& product, int64_t id);

  // Webhooks: a delivery per finished inspection of a product with a webhook.
  // Claims up to `max` due deliveries for `lease_seconds` (the time one attempt may take).
  std::vector<Delivery> DueDeliveries(int max, int lease_seconds = 60);
  void DeliveryDone(int64_t id);
  void DeliveryFailed(int64_t id, const std::string& error, int max_attempts, int delay_ms);
  nlohmann::json DeadLetters();
  int64_t CountDeadLetters();

 private:
  explicit Store(std::unique_ptr<Db> db) : db_(std::move(db)) {}
  Status Migrate();
  Status MigrateLocked(const std::vector<std::string>& migrations);
  StatusOr<DbRows> Q(const std::string& sql, const std::vector<DbValue>& args = {});
  StatusOr<DbRows> RecordVersion(const std::string& product, const std::string& actor, const nlohmann::json& change, bool bump = true);

  std::unique_ptr<BlobStore> blobs_;
  std::unique_ptr<Db> db_;
  std::recursive_mutex mu_;
};

// UTC now as "YYYY-MM-DDTHH:MM:SS.mmmZ" (sorts as text).
std::string NowIso();
// The time of such a text; nullopt when it is not one.
std::optional<std::chrono::system_clock::time_point> ParseIso(const std::string& text);

}  // namespace zeroqc
