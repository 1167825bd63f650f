#include "server/store.h"

#include <openssl/rand.h>

#include <chrono>
#include <ctime>
#include <algorithm>
#include <cstring>
#include <set>

#include "core/hash.h"

namespace zeroqc {
namespace {

// Migration i brings the schema from version i to i + 1. Never edit a shipped one: append, to
// both lists (one per dialect, the same number of steps, the same tables and columns).
const std::vector<std::string> kSqliteMigrations = {
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
    // 2: claims with leases (many workers), product revisions (engines reload everywhere), blobs
    // (kept in the database only by PostgreSQL; the table keeps the two schemas alike).
    R"(ALTER TABLE inspections ADD COLUMN worker TEXT;
       ALTER TABLE inspections ADD COLUMN lease_until TEXT;
       ALTER TABLE inspections ADD COLUMN claims INTEGER NOT NULL DEFAULT 0;
       ALTER TABLE products ADD COLUMN revision INTEGER NOT NULL DEFAULT 1;
       CREATE TABLE blobs(name TEXT PRIMARY KEY, data BLOB NOT NULL, created_at TEXT NOT NULL);)",
    // 3: numbered versions of each product (who, when, what changed, and the whole state, for
    // rollback); references are retired, not deleted, so a rollback can bring them back; every
    // inspection records the version that judged it.
    R"(ALTER TABLE refs ADD COLUMN removed_at TEXT;
       ALTER TABLE inspections ADD COLUMN reference_version INTEGER;
       CREATE TABLE product_versions(product TEXT NOT NULL, version INTEGER NOT NULL, created_at TEXT NOT NULL,
         actor TEXT NOT NULL, change TEXT NOT NULL, snapshot TEXT NOT NULL, PRIMARY KEY (product, version));
       INSERT INTO product_versions SELECT name, revision, created_at, 'migration', '{"op":"migrated"}', '{}' FROM products;)",
    // 4: defect types named by operators: one example region each (its descriptor), retired not deleted.
    R"(CREATE TABLE defect_examples(id INTEGER PRIMARY KEY, product TEXT NOT NULL REFERENCES products(name) ON DELETE CASCADE,
         name TEXT NOT NULL, inspection TEXT NOT NULL, box TEXT NOT NULL, descriptor BLOB NOT NULL, created_at TEXT NOT NULL,
         actor TEXT NOT NULL, removed_at TEXT);
       CREATE INDEX defect_examples_product ON defect_examples(product);)",
    // 5: a reference taught from an inspection names it, and one inspection is one current
    // reference of its product at most (repeated or parallel reviews must not multiply it).
    R"(ALTER TABLE refs ADD COLUMN from_inspection TEXT;
       CREATE UNIQUE INDEX refs_from_inspection ON refs(product, from_inspection)
         WHERE from_inspection IS NOT NULL AND removed_at IS NULL;)",
    // 6: products are retired, not deleted (their inspections and versions stay), and keys are
    // revoked at a known time.
    R"(ALTER TABLE products ADD COLUMN retired_at TEXT;
       ALTER TABLE api_keys ADD COLUMN revoked_at TEXT;)",
};

const std::vector<std::string> kPostgresMigrations = {
    R"(CREATE TABLE products(name TEXT PRIMARY KEY, engine TEXT NOT NULL, settings TEXT NOT NULL,
         webhook_url TEXT NOT NULL DEFAULT '', webhook_secret TEXT NOT NULL DEFAULT '', created_at TEXT NOT NULL);
       CREATE TABLE refs(id BIGSERIAL PRIMARY KEY, product TEXT NOT NULL REFERENCES products(name) ON DELETE CASCADE,
         blob TEXT NOT NULL, filename TEXT NOT NULL, created_at TEXT NOT NULL);
       CREATE TABLE inspections(seq BIGSERIAL PRIMARY KEY, id TEXT UNIQUE NOT NULL, product TEXT NOT NULL,
         batch TEXT, part_id TEXT, station TEXT, metadata TEXT NOT NULL, image_blob TEXT NOT NULL, image_name TEXT,
         status TEXT NOT NULL, verdict TEXT, score DOUBLE PRECISION, result TEXT, overlay_blob TEXT, error TEXT,
         created_at TEXT NOT NULL, finished_at TEXT);
       CREATE INDEX inspections_status ON inspections(status, seq);
       CREATE INDEX inspections_product ON inspections(product, seq);
       CREATE TABLE defects(inspection TEXT NOT NULL REFERENCES inspections(id) ON DELETE CASCADE, name TEXT, color TEXT,
         qc TEXT, reason TEXT, x_min BIGINT, y_min BIGINT, x_max BIGINT, y_max BIGINT, score DOUBLE PRECISION);
       CREATE TABLE reviews(id BIGSERIAL PRIMARY KEY, inspection TEXT NOT NULL REFERENCES inspections(id) ON DELETE CASCADE,
         verdict TEXT NOT NULL, comment TEXT NOT NULL, reviewer TEXT NOT NULL, created_at TEXT NOT NULL);
       CREATE TABLE api_keys(id BIGSERIAL PRIMARY KEY, hash TEXT UNIQUE NOT NULL, scope TEXT NOT NULL, name TEXT NOT NULL,
         created_at TEXT NOT NULL, revoked BIGINT NOT NULL DEFAULT 0);
       CREATE TABLE deliveries(id BIGSERIAL PRIMARY KEY, inspection TEXT NOT NULL, url TEXT NOT NULL, secret TEXT NOT NULL,
         status TEXT NOT NULL, attempts BIGINT NOT NULL DEFAULT 0, last_error TEXT, next_at TEXT NOT NULL, created_at TEXT NOT NULL);
       CREATE INDEX deliveries_due ON deliveries(status, next_at);)",
    R"(ALTER TABLE inspections ADD COLUMN worker TEXT;
       ALTER TABLE inspections ADD COLUMN lease_until TEXT;
       ALTER TABLE inspections ADD COLUMN claims BIGINT NOT NULL DEFAULT 0;
       ALTER TABLE products ADD COLUMN revision BIGINT NOT NULL DEFAULT 1;
       CREATE TABLE blobs(name TEXT PRIMARY KEY, data BYTEA NOT NULL, created_at TEXT NOT NULL);
       -- Images are compressed already: stored out of line without another compression attempt.
       ALTER TABLE blobs ALTER COLUMN data SET STORAGE EXTERNAL;)",
    R"(ALTER TABLE refs ADD COLUMN removed_at TEXT;
       ALTER TABLE inspections ADD COLUMN reference_version BIGINT;
       CREATE TABLE product_versions(product TEXT NOT NULL, version BIGINT NOT NULL, created_at TEXT NOT NULL,
         actor TEXT NOT NULL, change TEXT NOT NULL, snapshot TEXT NOT NULL, PRIMARY KEY (product, version));
       INSERT INTO product_versions SELECT name, revision, created_at, 'migration', '{"op":"migrated"}', '{}' FROM products;)",
    R"(CREATE TABLE defect_examples(id BIGSERIAL PRIMARY KEY, product TEXT NOT NULL REFERENCES products(name) ON DELETE CASCADE,
         name TEXT NOT NULL, inspection TEXT NOT NULL, box TEXT NOT NULL, descriptor BYTEA NOT NULL, created_at TEXT NOT NULL,
         actor TEXT NOT NULL, removed_at TEXT);
       CREATE INDEX defect_examples_product ON defect_examples(product);)",
    R"(ALTER TABLE refs ADD COLUMN from_inspection TEXT;
       CREATE UNIQUE INDEX refs_from_inspection ON refs(product, from_inspection)
         WHERE from_inspection IS NOT NULL AND removed_at IS NULL;)",
    R"(ALTER TABLE products ADD COLUMN retired_at TEXT;
       ALTER TABLE api_keys ADD COLUMN revoked_at TEXT;)",
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

std::optional<std::chrono::system_clock::time_point> ParseIso(const std::string& text) {
  std::tm tm{};
  int ms = 0;
  if (std::sscanf(text.c_str(), "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7)
    return std::nullopt;
  tm.tm_year -= 1900, tm.tm_mon -= 1;
  return std::chrono::system_clock::from_time_t(timegm(&tm)) + std::chrono::milliseconds(ms);
}

StatusOr<Scope> ParseScope(const std::string& s) {
  if (s == "read") return Scope::kRead;
  if (s == "write") return Scope::kWrite;
  if (s == "admin") return Scope::kAdmin;
  return InvalidArgument("scope must be read, write or admin, not '" + s + "'");
}

const char* ScopeName(Scope s) { return s == Scope::kRead ? "read" : s == Scope::kWrite ? "write" : "admin"; }

StatusOr<std::unique_ptr<Store>> Store::Open(const std::filesystem::path& dir, const std::string& db_url) {
  std::error_code ec;
  if (!dir.empty()) std::filesystem::create_directories(dir / "blobs", ec);
  if (ec) return IoError("cannot create data folder " + dir.string() + ": " + ec.message());
  if (dir.empty() && db_url.empty()) return InvalidArgument("the store needs a data folder or a database URL");
  auto db = db_url.empty() ? Db::OpenSqlite(dir / "zeroqc.db") : Db::OpenPostgres(db_url);
  if (!db.ok()) return db.status();
  auto s = std::unique_ptr<Store>(new Store(std::move(*db)));
  BlobStore::Remote remote;
  if (s->shared()) {  // every worker reads every blob: the database holds them, the folder caches them
    Store* self = s.get();
    remote.put = [self](const std::string& name, std::string_view bytes) -> Status {
      auto r = self->Q("INSERT INTO blobs(name, data, created_at) VALUES (?1, ?2, ?3) ON CONFLICT (name) DO NOTHING",
                       {name, DbBytes{std::string(bytes)}, NowIso()});
      return r.ok() ? Status::Ok() : r.status();
    };
    remote.get = [self](const std::string& name) -> StatusOr<std::string> {
      auto r = self->Q("SELECT data FROM blobs WHERE name = ?1", {name});
      if (!r.ok()) return r.status();
      if (r->empty()) return NotFound("no blob " + name);
      return Str((*r)[0][0]);
    };
  }
  s->blobs_ = std::make_unique<BlobStore>(dir.empty() ? dir : dir / "blobs", std::move(remote));
  ZQ_RETURN_IF_ERROR(s->Migrate());
  return s;
}

StatusOr<DbRows> Store::Q(const std::string& sql, const std::vector<DbValue>& args) {
  std::lock_guard lock(mu_);
  return db_->Query(sql, args);
}

Status Store::Migrate() {
  std::lock_guard lock(mu_);
  const auto& migrations = shared() ? kPostgresMigrations : kSqliteMigrations;
  // Serve processes starting together on one PostgreSQL: one migrates, the others wait for it.
  if (shared()) ZQ_RETURN_IF_ERROR(db_->Exec("SELECT pg_advisory_lock(740113)"));
  Status s = MigrateLocked(migrations);
  if (shared()) (void)db_->Exec("SELECT pg_advisory_unlock(740113)");
  return s;
}

Status Store::MigrateLocked(const std::vector<std::string>& migrations) {
  ZQ_RETURN_IF_ERROR(db_->Exec("CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL)"));
  auto v = db_->Query("SELECT version FROM schema_version");
  if (!v.ok()) return v.status();
  int version = v->empty() ? 0 : int(Int((*v)[0][0]));
  if (v->empty()) ZQ_RETURN_IF_ERROR(db_->Exec("INSERT INTO schema_version VALUES (0)"));
  if (version > int(migrations.size()))
    return Unsupported("the database is at schema version " + std::to_string(version) + ", newer than this zeroqc (" +
                       std::to_string(migrations.size()) + "): upgrade zeroqc");
  for (; version < int(migrations.size()); ++version) {
    ZQ_RETURN_IF_ERROR(db_->Exec(db_->Begin()));
    Status s = db_->Exec(migrations[size_t(version)]);
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

StatusOr<std::string> Store::CreateKey(Scope scope, const std::string& name, int64_t* id) {
  const std::string key = "zq_" + RandomHex(24);
  auto r = Q("INSERT INTO api_keys(hash, scope, name, created_at) VALUES (?1, ?2, ?3, ?4) RETURNING id",
             {Sha256Hex(key), std::string(ScopeName(scope)), name, NowIso()});
  if (!r.ok()) return r.status();
  if (id) *id = r->empty() ? 0 : Int((*r)[0][0]);
  return key;
}

StatusOr<std::optional<ApiKey>> Store::FindKey(const std::string& token) {
  auto r = Q("SELECT id, scope, name FROM api_keys WHERE hash = ?1 AND revoked = 0", {Sha256Hex(token)});
  if (!r.ok()) return Unavailable("the database did not answer: " + r.status().message());
  if (r->empty()) return std::optional<ApiKey>();
  auto scope = ParseScope(Str((*r)[0][1]));
  if (!scope.ok()) return std::optional<ApiKey>();
  return std::optional<ApiKey>(ApiKey{Int((*r)[0][0]), *scope, Str((*r)[0][2])});
}

std::vector<KeyInfo> Store::ListKeys() {
  std::vector<KeyInfo> out;
  auto r = Q("SELECT id, scope, name, created_at, revoked, revoked_at FROM api_keys ORDER BY id");
  if (!r.ok()) return out;
  for (const auto& row : *r) {
    auto scope = ParseScope(Str(row[1]));
    // Keys revoked before revoked_at existed say so without a time.
    const std::string revoked = Int(row[4]) ? (IsNull(row[5]) ? "unknown" : Str(row[5])) : "";
    out.push_back({Int(row[0]), scope.ok() ? *scope : Scope::kRead, Str(row[2]), Str(row[3]), revoked});
  }
  return out;
}

Status Store::RevokeKey(int64_t id) {
  std::lock_guard lock(mu_);
  ZQ_RETURN_IF_ERROR(db_->Exec(db_->Begin()));
  auto fail = [&](Status s) {
    (void)db_->Exec("ROLLBACK");
    return s;
  };
  // Under an exclusive claim on the key rows, so that two revocations cannot both pass the check.
  auto k = db_->Query(std::string("SELECT scope FROM api_keys WHERE id = ?1 AND revoked = 0") +
                          (db_->dialect() == Dialect::kPostgres ? " FOR UPDATE" : ""), {id});
  if (!k.ok()) return fail(k.status());
  if (k->empty()) return fail(NotFound("no key " + std::to_string(id) + " in use"));
  if (Str((*k)[0][0]) == "admin") {
    auto admins = db_->Query(std::string("SELECT id FROM api_keys WHERE scope = 'admin' AND revoked = 0") +
                             (db_->dialect() == Dialect::kPostgres ? " FOR UPDATE" : ""));
    if (!admins.ok()) return fail(admins.status());
    if (admins->size() <= 1)
      return fail(Conflict("key " + std::to_string(id) + " is the last admin key: create another admin key first"));
  }
  auto u = db_->Query("UPDATE api_keys SET revoked = 1, revoked_at = ?2 WHERE id = ?1", {id, NowIso()});
  if (!u.ok()) return fail(u.status());
  return db_->Exec("COMMIT");
}

Status Store::PutProduct(const Product& p, const std::string& actor, const std::string& reason) {
  std::lock_guard lock(mu_);
  ZQ_RETURN_IF_ERROR(db_->Exec(db_->Begin()));
  auto was = db_->Query("SELECT retired_at FROM products WHERE name = ?1", {p.name});
  const bool revived = was.ok() && !was->empty() && !IsNull((*was)[0][0]);
  auto r = was.ok() ? db_->Query(R"(INSERT INTO products(name, engine, settings, webhook_url, webhook_secret, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
               ON CONFLICT(name) DO UPDATE SET engine = ?2, settings = ?3, webhook_url = ?4, webhook_secret = ?5,
               revision = products.revision + 1, retired_at = NULL RETURNING revision)",
                                 {p.name, p.engine, p.settings.dump(), p.webhook_url, p.webhook_secret, NowIso()})
                    : StatusOr<DbRows>(was.status());
  if (r.ok() && revived)  // a new product under an old name: its references stay in the old versions only
    r = db_->Query("UPDATE refs SET removed_at = ?2 WHERE product = ?1 AND removed_at IS NULL", {p.name, NowIso()});
  if (r.ok()) {
    const bool created = was->empty() || revived;
    nlohmann::json change = {{"op", created ? "create" : "update"}, {"engine", p.engine}, {"settings", p.settings}};
    if (!reason.empty()) change["reason"] = reason;
    r = RecordVersion(p.name, actor, change, false);
  }
  if (!r.ok()) {
    (void)db_->Exec("ROLLBACK");
    return r.status();
  }
  return db_->Exec("COMMIT");
}

Status Store::RetireProduct(const std::string& name, const std::string& actor) {
  std::lock_guard lock(mu_);
  ZQ_RETURN_IF_ERROR(db_->Exec(db_->Begin()));
  auto r = db_->Query("UPDATE products SET retired_at = ?2 WHERE name = ?1 AND retired_at IS NULL RETURNING name", {name, NowIso()});
  if (r.ok() && r->empty()) r = NotFound("no product '" + name + "'");
  if (r.ok()) r = RecordVersion(name, actor, {{"op", "retire"}});
  if (!r.ok()) {
    (void)db_->Exec("ROLLBACK");
    return r.status();
  }
  return db_->Exec("COMMIT");
}

std::optional<Product> Store::GetProduct(const std::string& name) {
  auto r = Q("SELECT name, engine, settings, webhook_url, webhook_secret FROM products WHERE name = ?1 AND retired_at IS NULL", {name});
  if (!r.ok() || r->empty()) return std::nullopt;
  const auto& row = (*r)[0];
  return Product{Str(row[0]), Str(row[1]), ParseOr(Str(row[2]), nlohmann::json::object()), Str(row[3]), Str(row[4])};
}

std::vector<Product> Store::ListProducts() {
  std::vector<Product> out;
  auto r = Q("SELECT name FROM products WHERE retired_at IS NULL ORDER BY name");
  if (r.ok())
    for (const auto& row : *r)
      if (auto p = GetProduct(Str(row[0]))) out.push_back(*p);
  return out;
}

StatusOr<int64_t> Store::AddReference(const std::string& product, const std::string& blob, const std::string& filename,
                                       const std::string& actor, const nlohmann::json& why) {
  std::lock_guard lock(mu_);
  const std::string from = why.is_object() && why.contains("from_inspection") && why["from_inspection"].is_string()
                               ? why["from_inspection"].get<std::string>() : "";
  ZQ_RETURN_IF_ERROR(db_->Exec(db_->Begin()));
  if (!from.empty()) {  // one inspection is one reference (the unique index settles races between processes)
    auto dup = db_->Query("SELECT id FROM refs WHERE product = ?1 AND from_inspection = ?2 AND removed_at IS NULL", {product, from});
    if (dup.ok() && !dup->empty()) {
      (void)db_->Exec("ROLLBACK");
      return Conflict("inspection " + from + " is already reference " + std::to_string(Int((*dup)[0][0])) + " of product '" + product + "'");
    }
  }
  auto r = db_->Query("INSERT INTO refs(product, blob, filename, created_at, from_inspection) VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
                      {product, blob, filename, NowIso(), from.empty() ? DbValue(nullptr) : DbValue(from)});
  if (!r.ok() && !from.empty()) {
    (void)db_->Exec("ROLLBACK");
    return Conflict("inspection " + from + " is already a reference of product '" + product + "'");
  }
  int64_t id = 0;
  if (r.ok()) {
    id = Int((*r)[0][0]);
    nlohmann::json change = {{"op", "add_reference"}, {"reference", id}, {"filename", filename}};
    if (why.is_object()) change.update(why);
    r = RecordVersion(product, actor, change);
  }
  if (!r.ok()) {
    (void)db_->Exec("ROLLBACK");
    return r.status();
  }
  ZQ_RETURN_IF_ERROR(db_->Exec("COMMIT"));
  return id;
}

StatusOr<std::vector<int64_t>> Store::AddReferences(const std::string& product,
                                                    const std::vector<std::pair<std::string, std::string>>& blobs_and_names,
                                                    const std::string& actor) {
  std::lock_guard lock(mu_);
  ZQ_RETURN_IF_ERROR(db_->Exec(db_->Begin()));
  std::vector<int64_t> ids;
  nlohmann::json names = nlohmann::json::array();
  StatusOr<DbRows> r = DbRows{};
  for (const auto& [blob, filename] : blobs_and_names) {
    r = db_->Query("INSERT INTO refs(product, blob, filename, created_at) VALUES (?1, ?2, ?3, ?4) RETURNING id",
                   {product, blob, filename, NowIso()});
    if (!r.ok()) break;
    ids.push_back(Int((*r)[0][0]));
    names.push_back(filename);
  }
  if (r.ok()) r = RecordVersion(product, actor, {{"op", "add_references"}, {"references", ids}, {"filenames", names}});
  if (!r.ok()) {
    (void)db_->Exec("ROLLBACK");
    return r.status();
  }
  ZQ_RETURN_IF_ERROR(db_->Exec("COMMIT"));
  return ids;
}

// The product's revision goes up by one and the new version is recorded with the product's whole
// state after the change. REQUIRES: mu_ held, in a transaction.
StatusOr<DbRows> Store::RecordVersion(const std::string& product, const std::string& actor, const nlohmann::json& change, bool bump) {
  if (bump) {
    auto b = db_->Query("UPDATE products SET revision = revision + 1 WHERE name = ?1", {product});
    if (!b.ok()) return b;
  }
  auto p = db_->Query("SELECT revision, engine, settings, webhook_url FROM products WHERE name = ?1", {product});
  if (!p.ok()) return p;
  if (p->empty()) return NotFound("no product '" + product + "'");
  nlohmann::json refs = nlohmann::json::array();
  auto rr = db_->Query("SELECT id FROM refs WHERE product = ?1 AND removed_at IS NULL ORDER BY id", {product});
  if (!rr.ok()) return rr;
  for (const auto& row : *rr) refs.push_back(Int(row[0]));
  const auto& row = (*p)[0];
  const nlohmann::json snapshot = {{"engine", Str(row[1])}, {"settings", ParseOr(Str(row[2]), nlohmann::json::object())},
                                   {"webhook_url", Str(row[3])}, {"references", refs}};
  return db_->Query("INSERT INTO product_versions(product, version, created_at, actor, change, snapshot) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    {product, Int(row[0]), NowIso(), actor, change.dump(), snapshot.dump()});
}

int64_t Store::CountVersionsBy(const std::string& product, const std::string& actor) {
  auto r = Q("SELECT COUNT(*) FROM product_versions WHERE product = ?1 AND actor = ?2", {product, actor});
  return r.ok() && !r->empty() ? Int((*r)[0][0]) : 0;
}

nlohmann::json Store::Versions(const std::string& product) {
  nlohmann::json out = nlohmann::json::array();
  auto r = Q("SELECT version, created_at, actor, change, snapshot FROM product_versions WHERE product = ?1 ORDER BY version DESC", {product});
  if (r.ok())
    for (const auto& row : *r) {
      const auto snap = ParseOr(Str(row[4]), nlohmann::json::object());
      out.push_back({{"version", Int(row[0])}, {"created_at", Str(row[1])}, {"actor", Str(row[2])},
                     {"change", ParseOr(Str(row[3]), nlohmann::json::object())},
                     {"engine", snap.value("engine", "")}, {"settings", snap.value("settings", nlohmann::json::object())},
                     {"references", snap.value("references", nlohmann::json::array())}});
    }
  return out;
}

StatusOr<int64_t> Store::Rollback(const std::string& product, int64_t version, const std::string& actor) {
  std::lock_guard lock(mu_);
  auto v = db_->Query("SELECT snapshot FROM product_versions WHERE product = ?1 AND version = ?2", {product, version});
  if (!v.ok()) return v.status();
  if (v->empty()) return NotFound("product '" + product + "' has no version " + std::to_string(version));
  const auto snap = ParseOr(Str((*v)[0][0]), nlohmann::json::object());
  if (!snap.contains("references") || !snap["references"].is_array())
    return InvalidArgument("version " + std::to_string(version) + " was recorded before versions kept the product's state: it cannot be restored");
  ZQ_RETURN_IF_ERROR(db_->Exec(db_->Begin()));
  auto fail = [&](Status s) -> StatusOr<int64_t> {
    (void)db_->Exec("ROLLBACK");
    return s;
  };
  auto r = db_->Query("UPDATE products SET engine = ?2, settings = ?3 WHERE name = ?1",
                      {product, snap.value("engine", "patch"), snap.value("settings", nlohmann::json::object()).dump()});
  if (!r.ok()) return fail(r.status());
  // The version's references are the product's again, and no others.
  std::set<int64_t> keep;
  for (const auto& id : snap["references"]) keep.insert(id.get<int64_t>());
  auto all = db_->Query("SELECT id, removed_at FROM refs WHERE product = ?1", {product});
  if (!all.ok()) return fail(all.status());
  const std::string now = NowIso();
  // Retire first, then revive: a reference taught again from the same inspection after the old one
  // was retired must leave before the old one returns (one current reference per inspection).
  for (const bool revive : {false, true}) {
    for (const auto& row : *all) {
      const bool active = IsNull(row[1]), wanted = keep.count(Int(row[0])) > 0;
      if (active == wanted || wanted != revive) continue;
      r = db_->Query("UPDATE refs SET removed_at = ?2 WHERE id = ?1", {Int(row[0]), wanted ? DbValue(nullptr) : DbValue(now)});
      if (!r.ok()) return fail(r.status());
    }
  }
  r = RecordVersion(product, actor, {{"op", "rollback"}, {"to", version}});
  if (!r.ok()) return fail(r.status());
  auto rev = db_->Query("SELECT revision FROM products WHERE name = ?1", {product});
  if (!rev.ok() || rev->empty()) return fail(Internal("product vanished during rollback"));
  ZQ_RETURN_IF_ERROR(db_->Exec("COMMIT"));
  return Int((*rev)[0][0]);
}

std::optional<nlohmann::json> Store::VersionChange(const std::string& product, int64_t version) {
  auto r = Q("SELECT change FROM product_versions WHERE product = ?1 AND version = ?2", {product, version});
  if (!r.ok() || r->empty()) return std::nullopt;
  return ParseOr(Str((*r)[0][0]), nlohmann::json::object());
}

int64_t Store::Revision(const std::string& product) {
  auto r = Q("SELECT revision FROM products WHERE name = ?1", {product});
  return r.ok() && !r->empty() ? Int((*r)[0][0]) : 0;
}

std::vector<Reference> Store::ListReferences(const std::string& product) {
  std::vector<Reference> out;
  auto r = Q("SELECT id, blob, filename FROM refs WHERE product = ?1 AND removed_at IS NULL ORDER BY id", {product});
  if (r.ok())
    for (const auto& row : *r) out.push_back({Int(row[0]), Str(row[1]), Str(row[2])});
  return out;
}

bool Store::DeleteReference(const std::string& product, int64_t id, const std::string& actor) {
  std::lock_guard lock(mu_);
  if (!db_->Exec(db_->Begin()).ok()) return false;
  // Retired, not deleted: an earlier version that had it can be rolled back to.
  auto r = db_->Query("UPDATE refs SET removed_at = ?3 WHERE product = ?1 AND id = ?2 AND removed_at IS NULL RETURNING filename",
                      {product, id, NowIso()});
  const bool removed = r.ok() && !r->empty() &&
                       RecordVersion(product, actor, {{"op", "remove_reference"}, {"reference", id}, {"filename", Str((*r)[0][0])}}).ok();
  (void)db_->Exec(removed ? "COMMIT" : "ROLLBACK");
  return removed;
}

StatusOr<std::string> Store::Enqueue(const NewInspection& n, const std::string& claimed_by, int lease_seconds) {
  const std::string id = "ins_" + RandomHex(12);
  const bool claimed = !claimed_by.empty();
  auto r = Q(R"(INSERT INTO inspections(id, product, batch, part_id, station, metadata, image_blob, image_name, status, created_at,
                                        worker, claims, lease_until)
               VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, )" +
                 (claimed ? db_->NowSql(lease_seconds) : std::string("NULL")) + ")",
             {id, n.product, n.batch, n.part_id, n.station, n.metadata.dump(), n.image_blob, n.image_name,
              std::string(claimed ? "running" : "queued"), NowIso(), claimed ? DbValue(claimed_by) : DbValue(nullptr), int64_t(claimed)});
  if (!r.ok()) return r.status();
  return id;
}

std::optional<WorkItem> Store::ClaimNext(const std::string& worker, int lease_seconds) {
  std::lock_guard lock(mu_);
  // The oldest queued inspection, or a running one whose worker stopped renewing its lease.
  auto r = db_->Query("UPDATE inspections SET status = 'running', worker = ?1, claims = claims + 1, lease_until = " +
                          db_->NowSql(lease_seconds) +
                          " WHERE seq = (SELECT seq FROM inspections WHERE status = 'queued' OR (status = 'running' AND lease_until < " +
                          db_->NowSql() + ") ORDER BY seq LIMIT 1" + db_->SkipLocked() +
                          ") RETURNING id, product, image_blob, image_name, claims",
                      {worker});
  if (!r.ok() || r->empty()) return std::nullopt;
  const auto& row = (*r)[0];
  return WorkItem{Str(row[0]), Str(row[1]), Str(row[2]), Str(row[3]), int(Int(row[4]))};
}

int64_t Store::RenewLeases(const std::string& worker, int lease_seconds) {
  auto r = Q("UPDATE inspections SET lease_until = " + db_->NowSql(lease_seconds) +
                 " WHERE worker = ?1 AND status = 'running' RETURNING seq",
             {worker});
  return r.ok() ? int64_t(r->size()) : 0;
}

Status Store::Finish(const std::string& id, const std::string& worker, const InspectionResult& res, const std::string& overlay_blob,
                     int64_t reference_version) {
  std::lock_guard lock(mu_);
  ZQ_RETURN_IF_ERROR(db_->Exec(db_->Begin()));
  auto fail = [&](Status s) {
    (void)db_->Exec("ROLLBACK");
    return s;
  };
  const nlohmann::json j = ToJson(res);
  // Only the worker holding the claim completes it: one whose lease expired and whose job another
  // worker took finds no row here, and its result is dropped (each inspection finishes once).
  auto r = db_->Query(R"(UPDATE inspections SET status = ?2, verdict = ?3, score = ?4, result = ?5, overlay_blob = ?6,
                         error = ?7, finished_at = ?8, lease_until = NULL, reference_version = ?10
                         WHERE id = ?1 AND status = 'running' AND worker = ?9 RETURNING seq)",
                      {id, std::string(res.error ? "failed" : "done"), res.error ? DbValue(nullptr) : DbValue(res.verdict),
                       res.error ? DbValue(nullptr) : DbValue(res.score), j.dump(),
                       overlay_blob.empty() ? DbValue(nullptr) : DbValue(overlay_blob), res.error ? DbValue(*res.error) : DbValue(nullptr), NowIso(),
                       worker, reference_version > 0 ? DbValue(reference_version) : DbValue(nullptr)});
  if (!r.ok()) return fail(r.status());
  if (r->empty()) return fail(Unavailable("inspection " + id + " is no longer claimed by this worker (its lease expired)"));
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
  (void)Q("UPDATE inspections SET status = 'queued', worker = NULL, lease_until = NULL WHERE status = 'running'");
  return CountByStatus("queued");
}

void Store::ReleaseClaims(const std::string& worker) {
  (void)Q("UPDATE inspections SET status = 'queued', worker = NULL, lease_until = NULL WHERE status = 'running' AND worker = ?1", {worker});
}

double Store::OldestQueuedSeconds() {
  auto r = Q("SELECT MIN(created_at) FROM inspections WHERE status = 'queued'");
  if (!r.ok() || r->empty() || IsNull((*r)[0][0])) return 0;
  const auto at = ParseIso(Str((*r)[0][0]));
  return at ? std::max(0.0, std::chrono::duration<double>(std::chrono::system_clock::now() - *at).count()) : 0;
}

int64_t Store::CountByStatus(const std::string& status) {
  auto r = Q("SELECT COUNT(*) FROM inspections WHERE status = ?1", {status});
  return r.ok() && !r->empty() ? Int((*r)[0][0]) : 0;
}

std::optional<nlohmann::json> Store::GetInspection(const std::string& id) {
  auto r = Q(R"(SELECT id, product, batch, part_id, station, metadata, status, verdict, score, result, error, created_at,
                finished_at, image_name, overlay_blob, seq, worker, reference_version, image_blob FROM inspections WHERE id = ?1)", {id});
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
  // The defect regions operators named on this part (examples that name later parts).
  auto named = Q("SELECT id, name, box FROM defect_examples WHERE inspection = ?1 AND removed_at IS NULL ORDER BY id", {id});
  if (named.ok() && !named->empty()) {
    j["named_defects"] = nlohmann::json::array();
    for (const auto& x : *named)
      j["named_defects"].push_back({{"id", Int(x[0])}, {"name", Str(x[1])}, {"box", ParseOr(Str(x[2]), nullptr)}});
  }
  // The verdict that counts: the latest human review, else the machine's.
  j["final_verdict"] = j["reviews"].empty() ? j["verdict"] : j["reviews"].back()["verdict"];
  j["seq"] = Int(row[15]);
  // Which serve process judged it (host, pid): with many workers an auditor can tell them apart.
  j["worker"] = IsNull(row[16]) ? nlohmann::json(nullptr) : nlohmann::json(Str(row[16]));
  // The product version (references and settings) that judged it, and so its threshold: an auditor
  // can ask GET /v1/products/{product}/versions what that was.
  j["reference_version"] = IsNull(row[17]) ? nlohmann::json(nullptr) : nlohmann::json(Int(row[17]));
  return j;
}

std::optional<std::string> Store::StatusOf(const std::string& id) {
  auto r = Q("SELECT status FROM inspections WHERE id = ?1", {id});
  if (!r.ok() || r->empty()) return std::nullopt;
  return Str((*r)[0][0]);
}

std::optional<std::string> Store::InspectionBlob(const std::string& id, bool overlay) {
  auto r = Q(overlay ? "SELECT overlay_blob FROM inspections WHERE id = ?1" : "SELECT image_blob FROM inspections WHERE id = ?1", {id});
  if (!r.ok() || r->empty() || IsNull((*r)[0][0]) || Str((*r)[0][0]).empty()) return std::nullopt;  // '': a station error without a frame
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

Status Store::AddReview(const std::string& id, const std::string& verdict, const std::string& comment, const std::string& reviewer,
                        const std::string& product, const std::vector<DefectExample>& examples) {
  std::lock_guard lock(mu_);
  ZQ_RETURN_IF_ERROR(db_->Exec(db_->Begin()));
  auto fail = [&](const Status& s) {
    (void)db_->Exec("ROLLBACK");
    return s;
  };
  const std::string now = NowIso();
  auto r = db_->Query("INSERT INTO reviews(inspection, verdict, comment, reviewer, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                      {id, verdict, comment, reviewer, now});
  if (!r.ok()) return fail(r.status());
  for (const auto& e : examples) {
    DbBytes d{std::string(reinterpret_cast<const char*>(e.descriptor.data()), e.descriptor.size() * sizeof(float))};
    r = db_->Query(R"(INSERT INTO defect_examples(product, name, inspection, box, descriptor, created_at, actor)
                      VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7))",
                   {product, e.name, id, ToJson(e.box).dump(), std::move(d), now, reviewer});
    if (!r.ok()) return fail(r.status());
  }
  return db_->Exec("COMMIT");
}

std::vector<DefectExample> Store::DefectExamples(const std::string& product, bool with_descriptors) {
  std::vector<DefectExample> out;
  auto r = Q(std::string("SELECT id, name, inspection, box, created_at, actor") + (with_descriptors ? ", descriptor" : "") +
                 " FROM defect_examples WHERE product = ?1 AND removed_at IS NULL ORDER BY id",
             {product});
  if (!r.ok()) return out;
  for (const auto& row : *r) {
    DefectExample e;
    e.id = Int(row[0]), e.name = Str(row[1]), e.inspection = Str(row[2]), e.created_at = Str(row[4]), e.actor = Str(row[5]);
    const auto box = ParseOr(Str(row[3]), nlohmann::json::object());
    e.box = {box.value("x_min", 0), box.value("y_min", 0), box.value("x_max", 0), box.value("y_max", 0)};
    if (with_descriptors) {
      const std::string bytes = Str(row[6]);
      e.descriptor.resize(bytes.size() / sizeof(float));
      std::memcpy(e.descriptor.data(), bytes.data(), e.descriptor.size() * sizeof(float));
    }
    out.push_back(std::move(e));
  }
  return out;
}

bool Store::RemoveDefectExample(const std::string& product, int64_t id) {
  auto r = Q("UPDATE defect_examples SET removed_at = ?3 WHERE product = ?1 AND id = ?2 AND removed_at IS NULL RETURNING id",
             {product, id, NowIso()});
  return r.ok() && !r->empty();
}

nlohmann::json DefectExampleJson(const DefectExample& e) {
  return {{"id", e.id}, {"name", e.name}, {"inspection", e.inspection}, {"box", ToJson(e.box)},
          {"created_at", e.created_at}, {"actor", e.actor}};
}

std::vector<Delivery> Store::DueDeliveries(int max, int lease_seconds) {
  std::vector<Delivery> out;
  // Claimed by pushing next_at past the attempt: another worker does not send the same one meanwhile.
  const std::string lease = IsoAt(std::chrono::system_clock::now() + std::chrono::seconds(lease_seconds));
  auto r = Q(std::string(R"(UPDATE deliveries SET next_at = ?3 WHERE id IN (SELECT id FROM deliveries WHERE status = 'pending'
               AND next_at <= ?1 ORDER BY id LIMIT ?2)") + (shared() ? " FOR UPDATE SKIP LOCKED" : "") +
                 ") RETURNING id, inspection, url, secret, attempts",
             {NowIso(), int64_t(max), lease});
  if (r.ok())
    for (const auto& row : *r) out.push_back({Int(row[0]), Str(row[1]), Str(row[2]), Str(row[3]), int(Int(row[4]))});
  std::sort(out.begin(), out.end(), [](const Delivery& a, const Delivery& b) { return a.id < b.id; });
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
