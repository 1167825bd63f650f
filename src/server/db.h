// The service's database: one connection, statements with positional binds (?1..?n in every
// dialect), rows of typed values. Two implementations: SQLite (the embedded default, one process)
// and PostgreSQL (any number of serve processes on any number of machines share it).
// Not thread-safe by itself: Store serialises access.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "core/status.h"

namespace zeroqc {

struct DbBytes {  // binary data (bytea / BLOB), bound and read without text conversion
  std::string data;
};
using DbValue = std::variant<std::nullptr_t, int64_t, double, std::string, DbBytes>;
using DbRows = std::vector<std::vector<DbValue>>;

enum class Dialect { kSqlite, kPostgres };

class Db {
 public:
  static StatusOr<std::unique_ptr<Db>> OpenSqlite(const std::filesystem::path& path);
  // `url`: postgres://user[:password]@host[:port]/db[?options] or a libpq "key=value" string.
  static StatusOr<std::unique_ptr<Db>> OpenPostgres(const std::string& url);
  virtual ~Db() = default;

  virtual Dialect dialect() const = 0;
  virtual Status Exec(const std::string& sql) = 0;  // one or more statements, no results
  // Runs `sql` with `args` bound to ?1..?n; returns all rows.
  virtual StatusOr<DbRows> Query(const std::string& sql, const std::vector<DbValue>& args = {}) = 0;

  // SQL text for the database's clock plus `seconds`, as "YYYY-MM-DDTHH:MM:SS.mmmZ" like NowIso():
  // leases are judged by one clock, not by each worker's.
  std::string NowSql(int seconds = 0) const {
    const std::string s = std::to_string(seconds);
    if (dialect() == Dialect::kSqlite) return "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '" + s + " seconds')";
    return "to_char(clock_timestamp() AT TIME ZONE 'UTC' + interval '" + s + " seconds', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')";
  }
  // Starts a write transaction (SQLite takes the write lock at once, so it never has to upgrade).
  const char* Begin() const { return dialect() == Dialect::kSqlite ? "BEGIN IMMEDIATE" : "BEGIN"; }
  // Appended to a row-claiming subquery: concurrent claimers skip each other's rows instead of
  // waiting (PostgreSQL); SQLite has one writer at a time anyway.
  const char* SkipLocked() const { return dialect() == Dialect::kSqlite ? "" : " FOR UPDATE SKIP LOCKED"; }
};

// Typed reads of a row's columns.
inline std::string Str(const DbValue& v) {
  if (auto* s = std::get_if<std::string>(&v)) return *s;
  if (auto* b = std::get_if<DbBytes>(&v)) return b->data;
  return "";
}
inline int64_t Int(const DbValue& v) {
  if (std::holds_alternative<int64_t>(v)) return std::get<int64_t>(v);
  if (std::holds_alternative<double>(v)) return int64_t(std::get<double>(v));
  return 0;
}
inline double Real(const DbValue& v) {
  if (std::holds_alternative<double>(v)) return std::get<double>(v);
  if (std::holds_alternative<int64_t>(v)) return double(std::get<int64_t>(v));
  return 0;
}
inline bool IsNull(const DbValue& v) { return std::holds_alternative<std::nullptr_t>(v); }

}  // namespace zeroqc
