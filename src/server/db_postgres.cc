// The shared store: PostgreSQL through libpq. Statements keep the ?N placeholders of the SQLite
// text (rewritten to $N here); parameters travel typed, binary data as bytea.
#include <libpq-fe.h>

#include <cstring>

#include "server/db.h"

namespace zeroqc {
namespace {

// Type OIDs from PostgreSQL's pg_type.h (stable since forever).
constexpr Oid kBool = 16, kBytea = 17, kInt8 = 20, kInt2 = 21, kInt4 = 23, kOid = 26, kText = 25, kFloat4 = 700,
              kFloat8 = 701, kNumeric = 1700;

// ?N -> $N outside quoted literals and identifiers.
std::string Placeholders(const std::string& sql) {
  std::string out;
  out.reserve(sql.size());
  char quote = 0;
  for (size_t i = 0; i < sql.size(); ++i) {
    const char c = sql[i];
    if (quote) {
      if (c == quote) quote = 0;
    } else if (c == '\'' || c == '"') {
      quote = c;
    } else if (c == '?' && i + 1 < sql.size() && std::isdigit(static_cast<unsigned char>(sql[i + 1]))) {
      out += '$';
      continue;
    }
    out += c;
  }
  return out;
}

std::string FromHex(const char* p, size_t n) {  // bytea's text form: \x followed by hex digits
  std::string out;
  if (n < 2 || p[0] != '\\' || p[1] != 'x') return std::string(p, n);
  out.reserve((n - 2) / 2);
  auto nib = [](char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; };
  for (size_t i = 2; i + 1 < n; i += 2) out += char(nib(p[i]) << 4 | nib(p[i + 1]));
  return out;
}

class PostgresDb : public Db {
 public:
  ~PostgresDb() override {
    if (conn_) PQfinish(conn_);
  }
  Dialect dialect() const override { return Dialect::kPostgres; }

  Status Exec(const std::string& sql) override {
    const bool begin = sql.rfind("BEGIN", 0) == 0, end = sql == "COMMIT" || sql == "ROLLBACK";
    if (end && !in_tx_) return Status::Ok();  // the transaction died with its connection: nothing to end
    if (end) in_tx_ = false;
    ReconnectIfLost();
    std::unique_ptr<PGresult, void (*)(PGresult*)> r(PQexec(conn_, sql.c_str()), PQclear);
    const auto st = PQresultStatus(r.get());
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
      in_tx_ = begin || (in_tx_ && !end);
      return Status::Ok();
    }
    if (DiskFull(r.get())) return NoSpace("the database's disk is full: nothing was stored");
    return Internal(std::string("database: ") + PQerrorMessage(conn_));
  }

  // SQLSTATE class 53 (insufficient resources): 53100 disk_full.
  static bool DiskFull(const PGresult* r) {
    const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
    return state && std::string(state) == "53100";
  }

  StatusOr<DbRows> Query(const std::string& sql, const std::vector<DbValue>& args) override {
    const std::string text = Placeholders(sql);
    std::vector<Oid> types(args.size(), 0);
    std::vector<std::string> held(args.size());
    std::vector<const char*> values(args.size(), nullptr);
    std::vector<int> lengths(args.size(), 0), formats(args.size(), 0);
    for (size_t i = 0; i < args.size(); ++i) {
      if (auto* s = std::get_if<std::string>(&args[i])) {
        types[i] = kText, values[i] = s->c_str();
      } else if (auto* b = std::get_if<DbBytes>(&args[i])) {
        types[i] = kBytea, values[i] = b->data.data(), lengths[i] = int(b->data.size()), formats[i] = 1;
      } else if (auto* n = std::get_if<int64_t>(&args[i])) {
        types[i] = kInt8, held[i] = std::to_string(*n), values[i] = held[i].c_str();
      } else if (auto* d = std::get_if<double>(&args[i])) {
        char buf[40];
        std::snprintf(buf, sizeof buf, "%.17g", *d);
        types[i] = kFloat8, held[i] = buf, values[i] = held[i].c_str();
      }
    }
    // A read that met a lost connection is tried once more on a new one (a read is safe to repeat).
    const bool read = sql.rfind("SELECT", 0) == 0;
    for (int attempt = 0;; ++attempt) {
      ReconnectIfLost();
      std::unique_ptr<PGresult, void (*)(PGresult*)> r(
          PQexecParams(conn_, text.c_str(), int(args.size()), types.data(), values.data(), lengths.data(), formats.data(), 0),
          PQclear);
      const auto st = PQresultStatus(r.get());
      if (st == PGRES_COMMAND_OK) return DbRows{};
      if (st == PGRES_TUPLES_OK) return Rows(r.get());
      if (read && attempt == 0 && !in_tx_ && PQstatus(conn_) != CONNECTION_OK) continue;
      if (DiskFull(r.get())) return NoSpace("the database's disk is full: nothing was stored");
      return Internal(std::string("database: ") + PQresultErrorMessage(r.get()) + " in: " + sql);
    }
  }

  // A connection lost (the server restarted, a network cut) is opened again before the next
  // statement, never inside a transaction (that transaction is gone: its statements fail until
  // the caller ends it). A statement that failed is not retried: it may have been applied.
  void ReconnectIfLost() {
    if (in_tx_ || PQstatus(conn_) == CONNECTION_OK) return;
    PQreset(conn_);
    if (PQstatus(conn_) == CONNECTION_OK) PQclear(PQexec(conn_, "SET client_min_messages = warning; SET TIME ZONE 'UTC'"));
  }

  static DbRows Rows(PGresult* r) {
    DbRows rows;
    const int n = PQntuples(r), m = PQnfields(r);
    rows.reserve(size_t(n));
    for (int i = 0; i < n; ++i) {
      std::vector<DbValue> row;
      row.reserve(size_t(m));
      for (int c = 0; c < m; ++c) {
        if (PQgetisnull(r, i, c)) {
          row.emplace_back(nullptr);
          continue;
        }
        const char* v = PQgetvalue(r, i, c);
        const size_t len = size_t(PQgetlength(r, i, c));
        switch (PQftype(r, c)) {
          case kInt8: case kInt4: case kInt2: case kOid: row.emplace_back(int64_t(std::strtoll(v, nullptr, 10))); break;
          case kFloat4: case kFloat8: case kNumeric: row.emplace_back(std::strtod(v, nullptr)); break;
          case kBool: row.emplace_back(int64_t(v[0] == 't')); break;
          case kBytea: row.emplace_back(DbBytes{FromHex(v, len)}); break;
          default: row.emplace_back(std::string(v, len));
        }
      }
      rows.push_back(std::move(row));
    }
    return rows;
  }

  PGconn* conn_ = nullptr;
  bool in_tx_ = false;  // between a BEGIN of ours and its COMMIT or ROLLBACK
};

}  // namespace

StatusOr<std::unique_ptr<Db>> Db::OpenPostgres(const std::string& url) {
  auto db = std::make_unique<PostgresDb>();
  db->conn_ = PQconnectdb(url.c_str());
  if (!db->conn_) return Unavailable("cannot connect to PostgreSQL: out of memory");
  if (PQstatus(db->conn_) != CONNECTION_OK) {
    std::string why = PQerrorMessage(db->conn_);
    while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
    return Unavailable("cannot connect to PostgreSQL (" + why + ")");
  }
  PQsetNoticeProcessor(db->conn_, [](void*, const char*) {}, nullptr);  // "already exists, skipping" and the like
  ZQ_RETURN_IF_ERROR(db->Exec("SET client_min_messages = warning; SET TIME ZONE 'UTC'"));
  return std::unique_ptr<Db>(std::move(db));
}

}  // namespace zeroqc
