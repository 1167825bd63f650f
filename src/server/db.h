// A thin RAII layer over SQLite: one connection, prepared statements with positional binds.
// Not thread-safe by itself: Store serialises access.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "core/status.h"

namespace zeroqc {

using DbValue = std::variant<std::nullptr_t, int64_t, double, std::string>;

class Db {
 public:
  static StatusOr<std::unique_ptr<Db>> Open(const std::filesystem::path& path);
  ~Db();
  Status Exec(const std::string& sql);  // one or more statements, no results
  // Runs `sql` with `args` bound to ?1..?n; returns all rows.
  StatusOr<std::vector<std::vector<DbValue>>> Query(const std::string& sql, const std::vector<DbValue>& args = {});
  int64_t changes() const { return sqlite3_changes64(db_); }

 private:
  Db() = default;
  sqlite3* db_ = nullptr;
};

// Typed reads of a row's columns.
inline std::string Str(const DbValue& v) { return std::holds_alternative<std::string>(v) ? std::get<std::string>(v) : ""; }
inline int64_t Int(const DbValue& v) {
  if (std::holds_alternative<int64_t>(v)) return std::get<int64_t>(v);
  if (std::holds_alternative<double>(v)) return int64_t(std::get<double>(v));
  return 0;
}
inline bool IsNull(const DbValue& v) { return std::holds_alternative<std::nullptr_t>(v); }

}  // namespace zeroqc
