// Status and StatusOr: errors cross module lines as values, never as exceptions.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace zeroqc {

// What went wrong, coarsely: callers map it to exit codes or HTTP statuses.
// kIncomplete: data that ends early (a file perhaps still being written); corrupt to a client.
// kConflict: the request collides with the state it would change (a reference already taught).
// kNoSpace: the disk (or the database's) is full: nothing was stored.
enum class Code { kOk, kInvalidArgument, kNotFound, kIoError, kUnsupported, kTooLarge, kCorrupt, kIncomplete, kInternal, kUnavailable, kConflict, kNoSpace };

class Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status Ok() { return {}; }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
inline Status NotFound(std::string m) { return {Code::kNotFound, std::move(m)}; }
inline Status IoError(std::string m) { return {Code::kIoError, std::move(m)}; }
inline Status Unsupported(std::string m) { return {Code::kUnsupported, std::move(m)}; }
inline Status TooLarge(std::string m) { return {Code::kTooLarge, std::move(m)}; }
inline Status Corrupt(std::string m) { return {Code::kCorrupt, std::move(m)}; }
inline Status Incomplete(std::string m) { return {Code::kIncomplete, std::move(m)}; }
inline Status Internal(std::string m) { return {Code::kInternal, std::move(m)}; }
inline Status Unavailable(std::string m) { return {Code::kUnavailable, std::move(m)}; }
inline Status Conflict(std::string m) { return {Code::kConflict, std::move(m)}; }
inline Status NoSpace(std::string m) { return {Code::kNoSpace, std::move(m)}; }

// Either a value or the Status that explains why there is none.
template <class T>
class StatusOr {
 public:
  StatusOr(T value) : v_(std::move(value)) {}
  StatusOr(Status status) : v_(std::move(status)) {}  // REQUIRES: !status.ok()

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  // By value, so that `for (auto& x : *MakeList())` does not refer into a destroyed temporary.
  T value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T operator*() && { return std::move(*this).value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace zeroqc

#define ZQ_RETURN_IF_ERROR(expr)      \
  do {                                \
    ::zeroqc::Status _st = (expr);    \
    if (!_st.ok()) return _st;        \
  } while (0)
