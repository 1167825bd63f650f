// The embedded store: SQLite in WAL mode, one process per data folder.
#include <sqlite3.h>

#include <cerrno>

#include "server/db.h"

namespace zeroqc {
namespace {

class SqliteDb : public Db {
 public:
  ~SqliteDb() override {
    if (db_) sqlite3_close_v2(db_);
  }
  Dialect dialect() const override { return Dialect::kSqlite; }

  // A full disk is kNoSpace (507, readiness off until space returns); anything else is internal.
  Status Failed(const std::string& message) const {
    if (sqlite3_errcode(db_) == SQLITE_FULL || sqlite3_system_errno(db_) == ENOSPC)
      return NoSpace("the server's disk is full: nothing was stored");
    return Internal(message);
  }

  Status Exec(const std::string& sql) override {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      std::string m = err ? err : "unknown error";
      sqlite3_free(err);
      return Failed("database: " + m);
    }
    return Status::Ok();
  }

  StatusOr<DbRows> Query(const std::string& sql, const std::vector<DbValue>& args) override {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), int(sql.size()), &st, nullptr) != SQLITE_OK)
      return Internal(std::string("database: ") + sqlite3_errmsg(db_) + " in: " + sql);
    std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> guard(st, sqlite3_finalize);
    for (size_t i = 0; i < args.size(); ++i) {
      const int k = int(i + 1);
      if (auto* s = std::get_if<std::string>(&args[i])) sqlite3_bind_text(st, k, s->data(), int(s->size()), SQLITE_TRANSIENT);
      else if (auto* b = std::get_if<DbBytes>(&args[i])) sqlite3_bind_blob64(st, k, b->data.data(), b->data.size(), SQLITE_TRANSIENT);
      else if (auto* n = std::get_if<int64_t>(&args[i])) sqlite3_bind_int64(st, k, *n);
      else if (auto* d = std::get_if<double>(&args[i])) sqlite3_bind_double(st, k, *d);
      else sqlite3_bind_null(st, k);
    }
    DbRows rows;
    for (;;) {
      int rc = sqlite3_step(st);
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) return Failed(std::string("database: ") + sqlite3_errmsg(db_));
      std::vector<DbValue> row;
      for (int c = 0; c < sqlite3_column_count(st); ++c) {
        switch (sqlite3_column_type(st, c)) {
          case SQLITE_INTEGER: row.emplace_back(int64_t(sqlite3_column_int64(st, c))); break;
          case SQLITE_FLOAT: row.emplace_back(sqlite3_column_double(st, c)); break;
          case SQLITE_NULL: row.emplace_back(nullptr); break;
          case SQLITE_BLOB: {
            auto* p = reinterpret_cast<const char*>(sqlite3_column_blob(st, c));
            row.emplace_back(DbBytes{std::string(p ? p : "", size_t(sqlite3_column_bytes(st, c)))});
            break;
          }
          default: {
            auto* p = reinterpret_cast<const char*>(sqlite3_column_text(st, c));
            row.emplace_back(std::string(p ? p : "", size_t(sqlite3_column_bytes(st, c))));
          }
        }
      }
      rows.push_back(std::move(row));
    }
    return rows;
  }

  sqlite3* db_ = nullptr;
};

}  // namespace

StatusOr<std::unique_ptr<Db>> Db::OpenSqlite(const std::filesystem::path& path) {
  auto db = std::make_unique<SqliteDb>();
  if (sqlite3_open_v2(path.c_str(), &db->db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr) != SQLITE_OK)
    return IoError("cannot open database " + path.string() + ": " + (db->db_ ? sqlite3_errmsg(db->db_) : "out of memory"));
  sqlite3_busy_timeout(db->db_, 5000);
  // WAL: readers do not block the writer; synchronous=FULL: a committed row survives power loss.
  ZQ_RETURN_IF_ERROR(db->Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"));
  return std::unique_ptr<Db>(std::move(db));
}

}  // namespace zeroqc
