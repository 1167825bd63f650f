#include "server/store.h"

#include <openssl/rand.h>

#include <chrono>
#include <ctime>

#include "core/hash.h"

namespace zeroqc {
namespace {

// Migration i brings the schema from version i to i + 1. Never edit a shipped one: append.
const std::vector<std::string> kMigrations = {
    R"(CREATE TABLE products(name TEXT PRIMARY KEY, engine TEXT NOT NULL, settings TEXT NOT NULL,
         webhook_url TEXT NOT NULL DEFAULT '', webhook_secret TEXT NOT NULL DEFAULT '', created_at TEXT NOT NULL);
       CREATE TABLE refs(id INTEGER PRIMARY KEY, product TEXT NOT NULL REFERENCES products(name) ON DELETE CASCADE,
         blob TEXT NOT NULL, filename TEXT NOT NULL, created_at TEXT NOT NULL);
       CREATE TABLE inspections(seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, product TEXT NOT NULL,
         batch TEXT, part_id TEXT, station TEXT, metadata TEXT NOT NULL, image_blob TEXT NOT NULL, image_name TEXT,
         status TEXT NOT NULL, verdict TEXT, score REAL, result TEXT, overlay_blob TEXT, error TEXT,
         created_at TEXT NOT NULL, finished_at TEXT);
       CREATE INDEX inspections_status ON inspections(status, seq);
       CREATE INDEX inspections_product ON inspections(product, seq);
       CREATE TABLE defects(inspection TEXT NOT NULL REFERENCES inspections(id) ON DELETE CASCADE, name TEXT, color TEXT,
         qc TEXT, reason TEXT, x_min INTEGER, y_min INTEGER, x_max INTEGER, y_max INTEGER, score REAL);
       CREATE TABLE reviews(id INTEGER PRIMARY KEY, inspection TEXT NOT NULL REFERENCES inspections(id) ON DELETE CASCADE,
         verdict TEXT NOT NULL, comment TEXT NOT NULL, reviewer TEXT NOT NULL, created_at TEXT NOT NULL);
       CREATE TABLE api_keys(id INTEGER PRIMARY KEY, hash TEXT UNIQUE NOT NULL, scope TEXT NOT NULL, name TEXT NOT NULL,
         created_at TEXT NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
       CREATE TABLE deliveries(id INTEGER PRIMARY KEY, inspection TEXT NOT NULL, url TEXT NOT NULL, secret TEXT NOT NULL,
         status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, next_at TEXT NOT NULL, created_at TEXT NOT NULL);
       CREATE INDEX deliveries_due ON deliveries(status, next_at);)",
};

std::string RandomHex(int bytes) {
  std::string raw(size_t(bytes), '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), bytes);
  return HexLower(raw);
}

std::string IsoAt(std::chrono::system_clock::time_point t) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  std::time_t s = ms / 1000;
  std::tm tm{};
  gmtime_r(&s, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[48];
  std::snprintf(out, sizeof out, "%s.%03dZ", buf, int(ms % 1000));
  return out;
}

nlohmann::json ParseOr(const std::string& s, nlohmann::json fallback) {
  auto j = nlohmann::json::parse(s, nullptr, false);
  return j.is_discarded() ? fallback : j;
}

}  // namespace

std::string NowIso() { return IsoAt(std::chrono::system_clock::now()); }

StatusOr<Scope> ParseScope(const std::string& s) {
  if (s == "read") return Scope::kRead;
  if (s == "write") return Scope::kWrite;
  if (s == "admin") return Scope::kAdmin;
  return InvalidArgument("scope must be read, write or admin, not '" + s + "'");
}

const char* ScopeName(Scope s) { return s == Scope::kRead ? "read" : s == Scope::kWrite ? "write" : "admin"; }

StatusOr<std::unique_ptr<Store>> Store::Open(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir / "blobs", ec);
  if (ec) return IoError("cannot create data folder " + dir.string() + ": " + ec.message());
  auto db = Db::Open(dir / "zeroqc.db");
  if (!db.ok()) return db.status();
  auto s = std::unique_ptr<Store>(new Store(dir, std::move(*db)));
  ZQ_RETURN_IF_ERROR(s->Migrate());
  return s;
}

StatusOr<std::vector<std::vector<DbValue>>> Store::Q(const std::string& sql, const std::vector<DbValue>& args) {
  std::lock_guard lock(mu_);
  return db_->Query(sql, args);
}

Status Store::Migrate() {
  std::lock_guard lock(mu_);
  ZQ_RETURN_IF_ERROR(db_->Exec("CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL)"));
  auto v = db_->Query("SELECT version FROM schema_version");
  if (!v.ok()) return v.status();
  int version = v->empty() ? 0 : int(Int((*v)[0][0]));
  if (v->empty()) ZQ_RETURN_IF_ERROR(db_->Exec("INSERT INTO schema_version VALUES (0)"));
  if (version > int(kMigrations.size()))
    return Unsupported("the database is at schema version " + std::to_string(version) + ", newer than this zeroqc (" +
                       std::to_string(kMigrations.size()) + "): upgrade zeroqc");
  for (; version < int(kMigrations.size()); ++version) {
    ZQ_RETURN_IF_ERROR(db_->Exec("BEGIN IMMEDIATE"));
    Status s = db_->Exec(kMigrations[size_t(version)]);
    if (s.ok()) s = db_->Exec("UPDATE schema_version SET version = " + std::to_string(version + 1));
    if (!s.ok()) {
      (void)db_->Exec("ROLLBACK");
      return s;
    }
    ZQ_RETURN_IF_ERROR(db_->Exec("COMMIT"));
  }
  return Status::Ok();
}

int Store::schema_version() {
  auto v = Q("SELECT version FROM schema_version");
  return v.ok() && !v->empty() ? int(Int((*v)[0][0])) : 0;
}

StatusOr<std::string> Store::CreateKey(Scope scope, const std::string& name) {
  const std::string key = "zq_" + RandomHex(24);
  auto r = Q("INSERT INTO api_keys(hash, scope, name, created_at) VALUES (?1, ?2, ?3, ?4)",
             {Sha256Hex(key), std::string(ScopeName(scope)), name, NowIso()});
  if (!r.ok()) return r.status();
  return key;
}

std::optional<ApiKey> Store::FindKey(const std::string& token) {
  auto r = Q("SELECT id, scope, name FROM api_keys WHERE hash = ?1 AND revoked = 0", {Sha256Hex(token)});
  if (!r.ok() || r->empty()) return std::nullopt;
  auto scope = ParseScope(Str((*r)[0][1]));
  if (!scope.ok()) return std::nullopt;
  return ApiKey{Int((*r)[0][0]), *scope, Str((*r)[0][2])};
}

Status Store::PutProduct(const Product& p) {
  auto r = Q(R"(INSERT INTO products(name, engine, settings, webhook_url, webhook_secret, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
               ON CONFLICT(name) DO UPDATE SET engine = ?2, settings = ?3, webhook_url = ?4, webhook_secret = ?5)",
             {p.name, p.engine, p.settings.dump(), p.webhook_url, p.webhook_secret, NowIso()});
  return r.ok() ? Status::Ok() : r.status();
}

std::optional<Product> Store::GetProduct(const std::string& name) {
  auto r = Q("SELECT name, engine, settings, webhook_url, webhook_secret FROM products WHERE name = ?1", {name});
  if (!r.ok() || r->empty()) return std::nullopt;
  const auto& row = (*r)[0];
  return Product{Str(row[0]), Str(row[1]), ParseOr(Str(row[2]), nlohmann::json::object()), Str(row[3]), Str(row[4])};
}

std::vector<Product> Store::ListProducts() {
  std::vector<Product> out;
  auto r = Q("SELECT name FROM products ORDER BY name");
  if (r.ok())
    for (const auto& row : *r)
      if (auto p = GetProduct(Str(row[0]))) out.push_back(*p);
  return out;
}

StatusOr<int64_t> Store::AddReference(const std::string& product, const std::string& blob, const std::string& filename) {
  std::lock_guard lock(mu_);
  auto r = db_->Query("INSERT INTO refs(product, blob, filename, created_at) VALUES (?1, ?2, ?3, ?4) RETURNING id",
                      {product, blob, filename, NowIso()});
  if (!r.ok()) return r.status();
  return Int((*r)[0][0]);
}

std::vector<Reference> Store::ListReferences(const std::string& product) {
  std::vector<Reference> out;
  auto r = Q("SELECT id, blob, filename FROM refs WHERE product = ?1 ORDER BY id", {product});
  if (r.ok())
    for (const auto& row : *r) out.push_back({Int(row[0]), Str(row[1]), Str(row[2])});
  return out;
}

bool Store::DeleteReference(const std::string& product, int64_t id) {
  std::lock_guard lock(mu_);
  auto r = db_->Query("DELETE FROM refs WHERE product = ?1 AND id = ?2", {product, id});
  return r.ok() && db_->changes() > 0;
}

StatusOr<std::string> Store::Enqueue(const NewInspection& n) {
  const std::string id = "ins_" + RandomHex(12);
  auto r = Q(R"(INSERT INTO inspections(id, product, batch, part_id, station, metadata, image_blob, image_name, status, created_at)
               VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'queued', ?9))",
             {id, n.product, n.batch, n.part_id, n.station, n.metadata.dump(), n.image_blob, n.image_name, NowIso()});
  if (!r.ok()) return r.status();
  return id;
}

std::optional<WorkItem> Store::ClaimNext() {
  auto r = Q(R"(UPDATE inspections SET status = 'running'
               WHERE seq = (SELECT seq FROM inspections WHERE status = 'queued' ORDER BY seq LIMIT 1)
               RETURNING id, product, image_blob, image_name)");
  if (!r.ok() || r->empty()) return std::nullopt;
  const auto& row = (*r)[0];
  return WorkItem{Str(row[0]), Str(row[1]), Str(row[2]), Str(row[3])};
}

Status Store::Finish(const std::string& id, const InspectionResult& res, const std::string& overlay_blob) {
  std::lock_guard lock(mu_);
  ZQ_RETURN_IF_ERROR(db_->Exec("BEGIN IMMEDIATE"));
  auto fail = [&](Status s) {
    (void)db_->Exec("ROLLBACK");
    return s;
  };
  const nlohmann::json j = ToJson(res);
  auto r = db_->Query(R"(UPDATE inspections SET status = ?2, verdict = ?3, score = ?4, result = ?5, overlay_blob = ?6,
                         error = ?7, finished_at = ?8 WHERE id = ?1)",
                      {id, std::string(res.error ? "failed" : "done"), res.error ? DbValue(nullptr) : DbValue(res.verdict),
                       res.error ? DbValue(nullptr) : DbValue(res.score), j.dump(),
                       overlay_blob.empty() ? DbValue(nullptr) : DbValue(overlay_blob), res.error ? DbValue(*res.error) : DbValue(nullptr), NowIso()});
  if (!r.ok()) return fail(r.status());
  for (const auto& o : res.objects) {
    r = db_->Query("INSERT INTO defects VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                   {id, o.name, o.color, o.qc, o.reason, int64_t(o.box.x_min), int64_t(o.box.y_min), int64_t(o.box.x_max),
                    int64_t(o.box.y_max), o.score ? DbValue(*o.score) : DbValue(nullptr)});
    if (!r.ok()) return fail(r.status());
  }
  // A webhook delivery is queued in the same transaction: a finished inspection is never left unannounced.
  r = db_->Query(R"(INSERT INTO deliveries(inspection, url, secret, status, next_at, created_at)
                    SELECT ?1, p.webhook_url, p.webhook_secret, 'pending', ?2, ?2 FROM inspections i JOIN products p ON p.name = i.product
                    WHERE i.id = ?1 AND p.webhook_url != '')",
                 {id, NowIso()});
  if (!r.ok()) return fail(r.status());
  return db_->Exec("COMMIT");
}

int64_t Store::RequeueRunning() {
  (void)Q("UPDATE inspections SET status = 'queued' WHERE status = 'running'");
  return CountByStatus("queued");
}

int64_t Store::CountByStatus(const std::string& status) {
  auto r = Q("SELECT COUNT(*) FROM inspections WHERE status = ?1", {status});
  return r.ok() && !r->empty() ? Int((*r)[0][0]) : 0;
}

std::optional<nlohmann::json> Store::GetInspection(const std::string& id) {
  auto r = Q(R"(SELECT id, product, batch, part_id, station, metadata, status, verdict, score, result, error, created_at,
                finished_at, image_name, overlay_blob, seq FROM inspections WHERE id = ?1)", {id});
  if (!r.ok() || r->empty()) return std::nullopt;
  const auto& row = (*r)[0];
  nlohmann::json j = {{"id", Str(row[0])}, {"product", Str(row[1])}, {"batch", Str(row[2])}, {"part_id", Str(row[3])},
                      {"station", Str(row[4])}, {"metadata", ParseOr(Str(row[5]), nlohmann::json::object())},
                      {"status", Str(row[6])}, {"created_at", Str(row[11])}, {"image_name", Str(row[13])}};
  j["finished_at"] = IsNull(row[12]) ? nlohmann::json(nullptr) : nlohmann::json(Str(row[12]));
  j["verdict"] = IsNull(row[7]) ? nlohmann::json(nullptr) : nlohmann::json(Str(row[7]));
  j["result"] = IsNull(row[9]) ? nlohmann::json(nullptr) : ParseOr(Str(row[9]), nullptr);
  if (!IsNull(row[10])) j["error"] = Str(row[10]);
  j["links"] = {{"self", "/v1/inspections/" + Str(row[0])}, {"image", "/v1/inspections/" + Str(row[0]) + "/image"}};
  if (!IsNull(row[14])) j["links"]["overlay"] = "/v1/inspections/" + Str(row[0]) + "/overlay";
  j["reviews"] = nlohmann::json::array();
  auto rv = Q("SELECT verdict, comment, reviewer, created_at FROM reviews WHERE inspection = ?1 ORDER BY id", {id});
  if (rv.ok())
    for (const auto& x : *rv)
      j["reviews"].push_back({{"verdict", Str(x[0])}, {"comment", Str(x[1])}, {"reviewer", Str(x[2])}, {"created_at", Str(x[3])}});
  // The verdict that counts: the latest human review, else the machine's.
  j["final_verdict"] = j["reviews"].empty() ? j["verdict"] : j["reviews"].back()["verdict"];
  j["seq"] = Int(row[15]);
  return j;
}

std::optional<std::string> Store::StatusOf(const std::string& id) {
  auto r = Q("SELECT status FROM inspections WHERE id = ?1", {id});
  if (!r.ok() || r->empty()) return std::nullopt;
  return Str((*r)[0][0]);
}

std::optional<std::string> Store::InspectionBlob(const std::string& id, bool overlay) {
  auto r = Q(overlay ? "SELECT overlay_blob FROM inspections WHERE id = ?1" : "SELECT image_blob FROM inspections WHERE id = ?1", {id});
  if (!r.ok() || r->empty() || IsNull((*r)[0][0])) return std::nullopt;
  return Str((*r)[0][0]);
}

nlohmann::json Store::ListInspections(const InspectionFilter& f) {
  std::string sql = "SELECT id, seq FROM inspections WHERE 1 = 1";
  std::vector<DbValue> args;
  auto add = [&](const std::string& cond, DbValue v) {
    args.push_back(std::move(v));
    sql += " AND " + cond + " ?" + std::to_string(args.size());
  };
  if (!f.product.empty()) add("product =", f.product);
  if (!f.verdict.empty()) add("verdict =", f.verdict);
  if (!f.since.empty()) add("created_at >=", f.since);
  if (f.before_seq > 0) add("seq <", f.before_seq);
  sql += " ORDER BY seq DESC LIMIT " + std::to_string(std::clamp(f.limit, 1, 500) + 1);
  nlohmann::json out = {{"items", nlohmann::json::array()}, {"next_cursor", nullptr}};
  auto r = Q(sql, args);
  if (!r.ok()) return out;
  for (size_t i = 0; i < r->size(); ++i) {
    if (int(i) == std::clamp(f.limit, 1, 500)) {  // one more than asked for: there is a next page
      out["next_cursor"] = std::to_string(Int((*r)[i - 1][1]));
      break;
    }
    if (auto j = GetInspection(Str((*r)[i][0]))) out["items"].push_back(*j);
  }
  return out;
}

Status Store::AddReview(const std::string& id, const std::string& verdict, const std::string& comment, const std::string& reviewer) {
  auto r = Q("INSERT INTO reviews(inspection, verdict, comment, reviewer, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
             {id, verdict, comment, reviewer, NowIso()});
  return r.ok() ? Status::Ok() : r.status();
}

std::vector<Delivery> Store::DueDeliveries(int max) {
  std::vector<Delivery> out;
  auto r = Q("SELECT id, inspection, url, secret, attempts FROM deliveries WHERE status = 'pending' AND next_at <= ?1 ORDER BY id LIMIT ?2",
             {NowIso(), int64_t(max)});
  if (r.ok())
    for (const auto& row : *r) out.push_back({Int(row[0]), Str(row[1]), Str(row[2]), Str(row[3]), int(Int(row[4]))});
  return out;
}

void Store::DeliveryDone(int64_t id) { (void)Q("UPDATE deliveries SET status = 'delivered', attempts = attempts + 1 WHERE id = ?1", {id}); }

void Store::DeliveryFailed(int64_t id, const std::string& error, int max_attempts, int delay_ms) {
  const std::string next = IsoAt(std::chrono::system_clock::now() + std::chrono::milliseconds(delay_ms));
  (void)Q(R"(UPDATE deliveries SET attempts = attempts + 1, last_error = ?2, next_at = ?3,
             status = CASE WHEN attempts + 1 >= ?4 THEN 'dead' ELSE 'pending' END WHERE id = ?1)",
          {id, error, next, int64_t(max_attempts)});
}

int64_t Store::CountDeadLetters() {
  auto r = Q("SELECT COUNT(*) FROM deliveries WHERE status = 'dead'");
  return r.ok() && !r->empty() ? Int((*r)[0][0]) : 0;
}

nlohmann::json Store::DeadLetters() {
  nlohmann::json out = nlohmann::json::array();
  auto r = Q("SELECT id, inspection, url, attempts, last_error, created_at FROM deliveries WHERE status = 'dead' ORDER BY id");
  if (r.ok())
    for (const auto& row : *r)
      out.push_back({{"id", Int(row[0])}, {"inspection", Str(row[1])}, {"url", Str(row[2])}, {"attempts", Int(row[3])},
                     {"last_error", Str(row[4])}, {"created_at", Str(row[5])}});
  return out;
}

}  // namespace zeroqc
