#include "features/torch_checkpoint.h"

#include <zip.h>

#include <cstring>
#include <fstream>
#include <limits>
#include <set>

namespace zeroqc {
namespace {

// A storage as the pickle names it: its key (file or record), element type and count.
struct StorageRef {
  std::string key;
  int element_size = 0;
  std::string dtype;  // "float", "double", "half", "bfloat16", "long", "int", "short", "char", "byte", "bool"
  int64_t numel = 0;
};

// Every value lives in the machine's arena and is referred to by index: no reference counting, so
// a pickle that nests deeply or builds a cycle cannot overflow the stack in a destructor.
struct Value {
  enum Kind { kNone, kBool, kInt, kBigInt, kFloat, kStr, kTuple, kList, kDict, kGlobal, kStorage, kTensor } kind = kNone;
  int64_t i = 0;
  double f = 0;
  std::string s;                            // str, big int's bytes, global "module.name"
  std::vector<int> items;                   // tuple, list
  std::vector<std::pair<int, int>> entries; // dict, in insertion order
  StorageRef storage;
  int tensor_storage = -1;  // tensor: its storage value, offset, size and stride in elements
  int64_t offset = 0;
  std::vector<int64_t> size, stride;
  int depth = 0;            // containers nested below it
};

// What a state dict may name; anything else is refused before it could be called.
const std::set<std::string> kCallables = {"collections.OrderedDict", "torch._utils._rebuild_tensor_v2",
                                          "torch._utils._rebuild_tensor", "torch._utils._rebuild_parameter"};
int ElementSize(const std::string& storage_type, std::string* dtype) {
  static const std::map<std::string, std::pair<std::string, int>> kTypes = {
      {"torch.FloatStorage", {"float", 4}}, {"torch.DoubleStorage", {"double", 8}},
      {"torch.HalfStorage", {"half", 2}},   {"torch.BFloat16Storage", {"bfloat16", 2}},
      {"torch.LongStorage", {"long", 8}},   {"torch.IntStorage", {"int", 4}},
      {"torch.ShortStorage", {"short", 2}}, {"torch.CharStorage", {"char", 1}},
      {"torch.ByteStorage", {"byte", 1}},   {"torch.BoolStorage", {"bool", 1}}};
  auto it = kTypes.find(storage_type);
  if (it == kTypes.end()) return 0;
  *dtype = it->second.first;
  return it->second.second;
}

constexpr int kMaxDepth = 32;          // a state dict nests 3-4 deep (its metadata)
constexpr size_t kMaxValues = 1 << 24;  // far above a large model's few thousand tensors

class Unpickler {
 public:
  explicit Unpickler(std::string_view data) : d_(data) {}

  // Runs one pickle from the start of the data to its STOP; `consumed` is its length.
  StatusOr<int> Load(size_t* consumed);
  const Value& at(int v) const { return arena_[size_t(v)]; }
  // Every storage the pickle referred to, by key.
  const std::map<std::string, StorageRef>& storages() const { return storages_; }

 private:
  Status Fail(const std::string& what) const {
    return Corrupt("checkpoint pickle, byte " + std::to_string(op_at_) + ": " + what);
  }
  Status Refuse(const std::string& what) const {
    return Unsupported("checkpoint pickle, byte " + std::to_string(op_at_) + ": " + what +
                       "; a state dict holds only tensors, so the checkpoint is refused");
  }
  StatusOr<std::string_view> Take(size_t n) {
    if (n > d_.size() - pos_) return Fail("the data ends inside an opcode (truncated?)");
    auto v = d_.substr(pos_, n);
    pos_ += n;
    return v;
  }
  StatusOr<uint64_t> Uint(size_t n) {  // little endian
    auto b = Take(n);
    if (!b.ok()) return b.status();
    uint64_t v = 0;
    for (size_t k = 0; k < n; ++k) v |= uint64_t(uint8_t((*b)[k])) << (8 * k);
    return v;
  }
  StatusOr<std::string_view> Line() {
    size_t e = d_.find('\n', pos_);
    if (e == std::string_view::npos || e - pos_ > 256) return Fail("a GLOBAL name without its end of line");
    auto v = d_.substr(pos_, e - pos_);
    pos_ = e + 1;
    return v;
  }
  StatusOr<int> New(Value v) {
    if (arena_.size() >= kMaxValues) return Fail("too many values");
    arena_.push_back(std::move(v));
    return int(arena_.size() - 1);
  }
  Status Push(StatusOr<int> v) {
    if (!v.ok()) return v.status();
    stack_.push_back(*v);
    return Status::Ok();
  }
  StatusOr<int> Pop() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() == marks_.back())) return Fail("the stack is empty");
    int v = stack_.back();
    stack_.pop_back();
    return v;
  }
  StatusOr<std::vector<int>> PopToMark() {
    if (marks_.empty()) return Fail("no MARK to pop to");
    std::vector<int> items(stack_.begin() + long(marks_.back()), stack_.end());
    stack_.resize(marks_.back());
    marks_.pop_back();
    return items;
  }
  Status Nest(int parent, int child) {  // records that child is now inside parent
    Value& p = arena_[size_t(parent)];
    p.depth = std::max(p.depth, arena_[size_t(child)].depth + 1);
    if (p.depth > kMaxDepth) return Refuse("containers nested more than " + std::to_string(kMaxDepth) + " deep");
    return Status::Ok();
  }
  StatusOr<int> Container(Value::Kind kind, const std::vector<int>& items) {
    Value v;
    v.kind = kind;
    auto t = New(std::move(v));
    if (!t.ok()) return t;
    for (int i : items) {
      ZQ_RETURN_IF_ERROR(Nest(*t, i));
      arena_[size_t(*t)].items.push_back(i);
    }
    return t;
  }
  Status SetItems(int dict, const std::vector<int>& kv) {
    if (at(dict).kind != Value::kDict) return Refuse("SETITEM on something that is not a dict");
    if (kv.size() % 2) return Fail("SETITEMS with an odd number of values");
    for (size_t k = 0; k < kv.size(); k += 2) {
      if (dict == kv[k + 1]) return Refuse("a dict that contains itself");
      ZQ_RETURN_IF_ERROR(Nest(dict, kv[k + 1]));
      arena_[size_t(dict)].entries.emplace_back(kv[k], kv[k + 1]);
    }
    return Status::Ok();
  }
  Status Append(int list, const std::vector<int>& items) {
    if (at(list).kind != Value::kList) return Refuse("APPEND to something that is not a list");
    for (int i : items) {
      if (i == list) return Refuse("a list that contains itself");
      ZQ_RETURN_IF_ERROR(Nest(list, i));
      arena_[size_t(list)].items.push_back(i);
    }
    return Status::Ok();
  }
  Status Global(const std::string& module, const std::string& name);
  Status Reduce();
  Status PersistentId();
  Status Memo(uint64_t index, int v) {
    if (index > kMaxValues) return Fail("a memo index out of range");
    memo_[index] = v;
    return Status::Ok();
  }
  Status Get(uint64_t index) {
    auto it = memo_.find(index);
    if (it == memo_.end()) return Fail("a memo entry that was never stored");
    stack_.push_back(it->second);
    return Status::Ok();
  }

  std::string_view d_;
  size_t pos_ = 0, op_at_ = 0;
  std::vector<Value> arena_;
  std::vector<int> stack_;
  std::vector<size_t> marks_;
  std::map<uint64_t, int> memo_;
  std::map<std::string, StorageRef> storages_;
};

Status Unpickler::Global(const std::string& module, const std::string& name) {
  const std::string full = module + "." + name;
  std::string dtype;
  if (!kCallables.count(full) && ElementSize(full, &dtype) == 0)
    return Refuse("it asks for the global " + full);
  Value v;
  v.kind = Value::kGlobal;
  v.s = full;
  return Push(New(std::move(v)));
}

Status Unpickler::PersistentId() {
  auto pid = Pop();
  if (!pid.ok()) return pid.status();
  const Value& t = at(*pid);
  // ('storage', torch.XStorage, key, location, numel[, view_metadata]) in both formats.
  if (t.kind != Value::kTuple || t.items.size() < 5 || t.items.size() > 6 || at(t.items[0]).kind != Value::kStr ||
      at(t.items[0]).s != "storage")
    return Refuse("a persistent id that is not a storage");
  const Value& type = at(t.items[1]);
  const Value& key = at(t.items[2]);
  const Value& numel = at(t.items[4]);
  if (type.kind != Value::kGlobal || key.kind != Value::kStr || numel.kind != Value::kInt || numel.i < 0)
    return Fail("a malformed storage reference");
  if (t.items.size() == 6 && at(t.items[5]).kind != Value::kNone) return Refuse("a view of a storage");
  StorageRef ref;
  ref.key = key.s;
  ref.numel = numel.i;
  ref.element_size = ElementSize(type.s, &ref.dtype);
  if (ref.element_size == 0) return Refuse("storage type " + type.s);
  if (ref.numel > (int64_t(1) << 34) / ref.element_size) return Refuse("a storage of " + std::to_string(ref.numel) + " elements");
  auto [it, fresh] = storages_.emplace(ref.key, ref);
  if (!fresh && (it->second.numel != ref.numel || it->second.dtype != ref.dtype))
    return Fail("storage " + ref.key + " is described twice, differently");
  Value v;
  v.kind = Value::kStorage;
  v.storage = ref;
  return Push(New(std::move(v)));
}

Status Unpickler::Reduce() {
  auto args = Pop();
  if (!args.ok()) return args.status();
  auto fn = Pop();
  if (!fn.ok()) return fn.status();
  if (at(*fn).kind != Value::kGlobal || !kCallables.count(at(*fn).s)) return Refuse("REDUCE on something that is not callable here");
  if (at(*args).kind != Value::kTuple) return Fail("REDUCE without an argument tuple");
  const std::string f = at(*fn).s;
  const std::vector<int> a = at(*args).items;
  auto ints = [&](int v, std::vector<int64_t>* out) -> bool {
    if (at(v).kind != Value::kTuple) return false;
    for (int i : at(v).items) {
      if (at(i).kind != Value::kInt) return false;
      out->push_back(at(i).i);
    }
    return true;
  };
  if (f == "collections.OrderedDict") {
    if (!a.empty()) return Refuse("an OrderedDict built from arguments");
    Value d;
    d.kind = Value::kDict;
    return Push(New(std::move(d)));
  }
  if (f == "torch._utils._rebuild_parameter") {  // (tensor, requires_grad, hooks): the tensor
    if (a.size() != 3 || at(a[0]).kind != Value::kTensor) return Fail("_rebuild_parameter without a tensor");
    stack_.push_back(a[0]);
    return Status::Ok();
  }
  // _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata]) and
  // _rebuild_tensor(storage, offset, size, stride).
  const bool v2 = f == "torch._utils._rebuild_tensor_v2";
  if (v2 ? (a.size() != 6 && a.size() != 7) : a.size() != 4) return Fail(f + " with " + std::to_string(a.size()) + " arguments");
  Value t;
  t.kind = Value::kTensor;
  if (at(a[0]).kind != Value::kStorage || at(a[1]).kind != Value::kInt || !ints(a[2], &t.size) || !ints(a[3], &t.stride) ||
      t.size.size() != t.stride.size() || t.size.size() > 8)
    return Fail(f + " with malformed arguments");
  t.tensor_storage = a[0];
  t.offset = at(a[1]).i;
  return Push(New(std::move(t)));
}

StatusOr<int> Unpickler::Load(size_t* consumed) {
  while (true) {
    op_at_ = pos_;
    auto opb = Take(1);
    if (!opb.ok()) return opb.status();
    const uint8_t op = uint8_t((*opb)[0]);
    Status st;
    switch (op) {
      case 0x80: {  // PROTO
        auto v = Uint(1);
        if (!v.ok()) return v.status();
        if (*v < 2 || *v > 5) return Refuse("pickle protocol " + std::to_string(*v));
        break;
      }
      case 0x95: st = Uint(8).status(); break;  // FRAME: a length hint only
      case '.': {                                // STOP
        if (stack_.size() != 1 || !marks_.empty()) return Fail("STOP with " + std::to_string(stack_.size()) + " values on the stack");
        *consumed = pos_;
        return stack_.back();
      }
      case '(': marks_.push_back(stack_.size()); break;
      case 'N': st = Push(New({})); break;
      case 0x88: case 0x89: {  // NEWTRUE, NEWFALSE
        Value v;
        v.kind = Value::kBool;
        v.i = op == 0x88;
        st = Push(New(std::move(v)));
        break;
      }
      case 'K': case 'M': case 'J': {  // BININT1, BININT2, BININT (signed)
        auto v = Uint(op == 'K' ? 1 : op == 'M' ? 2 : 4);
        if (!v.ok()) return v.status();
        Value x;
        x.kind = Value::kInt;
        x.i = op == 'J' ? int64_t(int32_t(uint32_t(*v))) : int64_t(*v);
        st = Push(New(std::move(x)));
        break;
      }
      case 0x8a: {  // LONG1: n little-endian two's-complement bytes
        auto n = Uint(1);
        if (!n.ok()) return n.status();
        auto b = Take(*n);
        if (!b.ok()) return b.status();
        Value x;
        if (*n <= 8) {
          uint64_t u = 0;
          for (size_t k = 0; k < *n; ++k) u |= uint64_t(uint8_t((*b)[k])) << (8 * k);
          if (*n > 0 && *n < 8 && (uint8_t((*b)[*n - 1]) & 0x80)) u |= ~uint64_t(0) << (8 * *n);  // sign-extend
          x.kind = Value::kInt;
          x.i = int64_t(u);
        } else {
          x.kind = Value::kBigInt;
          x.s = std::string(*b);
        }
        st = Push(New(std::move(x)));
        break;
      }
      case 'G': {  // BINFLOAT, big endian
        auto b = Take(8);
        if (!b.ok()) return b.status();
        uint64_t u = 0;
        for (int k = 0; k < 8; ++k) u = (u << 8) | uint8_t((*b)[k]);
        Value x;
        x.kind = Value::kFloat;
        std::memcpy(&x.f, &u, 8);
        st = Push(New(std::move(x)));
        break;
      }
      case 'X': case 0x8c: case 0x8d: case 'T': case 'U': {  // (SHORT_)BINUNICODE(8), (SHORT_)BINSTRING
        auto n = Uint(op == 0x8c || op == 'U' ? 1 : op == 0x8d ? 8 : 4);
        if (!n.ok()) return n.status();
        auto b = Take(*n);
        if (!b.ok()) return b.status();
        Value x;
        x.kind = Value::kStr;
        x.s = std::string(*b);
        st = Push(New(std::move(x)));
        break;
      }
      case '}': case ']': case ')': {  // EMPTY_DICT, EMPTY_LIST, EMPTY_TUPLE
        Value x;
        x.kind = op == '}' ? Value::kDict : op == ']' ? Value::kList : Value::kTuple;
        st = Push(New(std::move(x)));
        break;
      }
      case 't': case 'l': case 'd': {  // TUPLE, LIST, DICT from the mark
        auto items = PopToMark();
        if (!items.ok()) return items.status();
        if (op == 'd') {
          Value x;
          x.kind = Value::kDict;
          auto dct = New(std::move(x));
          if (!dct.ok()) return dct.status();
          st = SetItems(*dct, *items);
          if (st.ok()) stack_.push_back(*dct);
        } else {
          st = Push(Container(op == 't' ? Value::kTuple : Value::kList, *items));
        }
        break;
      }
      case 0x85: case 0x86: case 0x87: {  // TUPLE1-3
        const size_t n = op - 0x84;
        std::vector<int> items(n);
        for (size_t k = n; k-- > 0;) {
          auto v = Pop();
          if (!v.ok()) return v.status();
          items[k] = *v;
        }
        st = Push(Container(Value::kTuple, items));
        break;
      }
      case 'a': {  // APPEND
        auto v = Pop();
        if (!v.ok()) return v.status();
        if (stack_.empty()) return Fail("APPEND without a list");
        st = Append(stack_.back(), {*v});
        break;
      }
      case 'e': {  // APPENDS
        auto items = PopToMark();
        if (!items.ok()) return items.status();
        if (stack_.empty()) return Fail("APPENDS without a list");
        st = Append(stack_.back(), *items);
        break;
      }
      case 's': {  // SETITEM
        auto v = Pop();
        if (!v.ok()) return v.status();
        auto k = Pop();
        if (!k.ok()) return k.status();
        if (stack_.empty()) return Fail("SETITEM without a dict");
        st = SetItems(stack_.back(), {*k, *v});
        break;
      }
      case 'u': {  // SETITEMS
        auto kv = PopToMark();
        if (!kv.ok()) return kv.status();
        if (stack_.empty()) return Fail("SETITEMS without a dict");
        st = SetItems(stack_.back(), *kv);
        break;
      }
      case 'q': case 'r': {  // BINPUT, LONG_BINPUT
        auto idx = Uint(op == 'q' ? 1 : 4);
        if (!idx.ok()) return idx.status();
        if (stack_.empty()) return Fail("BINPUT on an empty stack");
        st = Memo(*idx, stack_.back());
        break;
      }
      case 0x94:  // MEMOIZE
        if (stack_.empty()) return Fail("MEMOIZE on an empty stack");
        st = Memo(memo_.size(), stack_.back());
        break;
      case 'h': case 'j': {  // BINGET, LONG_BINGET
        auto idx = Uint(op == 'h' ? 1 : 4);
        if (!idx.ok()) return idx.status();
        st = Get(*idx);
        break;
      }
      case 'c': {  // GLOBAL "module\nname\n"
        auto m = Line();
        if (!m.ok()) return m.status();
        auto n = Line();
        if (!n.ok()) return n.status();
        st = Global(std::string(*m), std::string(*n));
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        auto n = Pop();
        if (!n.ok()) return n.status();
        auto m = Pop();
        if (!m.ok()) return m.status();
        if (at(*n).kind != Value::kStr || at(*m).kind != Value::kStr) return Fail("STACK_GLOBAL without two strings");
        st = Global(at(*m).s, at(*n).s);
        break;
      }
      case 'R': st = Reduce(); break;
      case 'Q': st = PersistentId(); break;
      case 'b': {  // BUILD: a state dict's metadata (OrderedDict attributes) is not needed
        auto state = Pop();
        if (!state.ok()) return state.status();
        if (stack_.empty()) return Fail("BUILD without an object");
        const auto k = at(*state).kind;
        if (at(stack_.back()).kind != Value::kDict || (k != Value::kDict && k != Value::kNone && k != Value::kTuple))
          return Refuse("BUILD of an object other than a dict");
        break;
      }
      default: {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02x", op);
        return Refuse(std::string("opcode ") + hex + (op >= 0x20 && op < 0x7f ? std::string(" ('") + char(op) + "')" : ""));
      }
    }
    if (!st.ok()) return st;
  }
}

float HalfToFloat(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      int e = -1;
      uint32_t m = man;
      do {
        ++e;
        m <<= 1;
      } while (!(m & 0x400));
      bits = sign | uint32_t(127 - 15 - e) << 23 | (m & 0x3ff) << 13;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000 | man << 13;
  } else {
    bits = sign | (exp + 127 - 15) << 23 | man << 13;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

float Element(const char* p, const std::string& dtype) {
  auto get = [p](auto v) {
    std::memcpy(&v, p, sizeof v);
    return v;
  };
  if (dtype == "float") return get(float{});
  if (dtype == "double") return float(get(double{}));
  if (dtype == "half") return HalfToFloat(get(uint16_t{}));
  if (dtype == "bfloat16") {
    uint32_t bits = uint32_t(get(uint16_t{})) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
  }
  if (dtype == "long") return float(get(int64_t{}));
  if (dtype == "int") return float(get(int32_t{}));
  if (dtype == "short") return float(get(int16_t{}));
  if (dtype == "char") return float(get(int8_t{}));
  return float(get(uint8_t{}));  // byte, bool
}

// The tensors of the dict `root` (or of its "state_dict" / "model" entry).
StatusOr<StateDict> Materialise(const Unpickler& u, int root, const StorageReader& read) {
  if (u.at(root).kind != Value::kDict) return Unsupported("the checkpoint is not a dict of tensors");
  for (const char* inner : {"state_dict", "model"})
    for (const auto& [k, v] : u.at(root).entries)
      if (u.at(k).kind == Value::kStr && u.at(k).s == inner && u.at(v).kind == Value::kDict) return Materialise(u, v, read);
  std::map<std::string, std::string> bytes;  // storage key -> its data, read once
  StateDict out;
  for (const auto& [k, v] : u.at(root).entries) {
    if (u.at(k).kind != Value::kStr) return Unsupported("the checkpoint has a key that is not a string");
    const std::string& name = u.at(k).s;
    const Value& t = u.at(v);
    if (t.kind != Value::kTensor) return Unsupported("checkpoint entry " + name + " is not a tensor");
    const StorageRef& s = u.at(t.tensor_storage).storage;
    if (!bytes.count(s.key)) {
      auto b = read(s.key, size_t(s.numel) * size_t(s.element_size));
      if (!b.ok()) return b.status();
      if (b->size() != size_t(s.numel) * size_t(s.element_size))
        return Corrupt("storage " + s.key + " of " + name + " holds " + std::to_string(b->size()) + " bytes, not " +
                       std::to_string(s.numel * s.element_size));
      bytes[s.key] = std::move(*b);
    }
    TorchTensor tt;
    tt.shape = t.size;
    int64_t numel = 1;
    __int128 last = t.offset;  // the last element the view reads
    for (size_t d = 0; d < t.size.size(); ++d) {
      if (t.size[d] < 0 || t.stride[d] < 0) return Corrupt("tensor " + name + " has a negative size or stride");
      if (t.size[d] > 0 && numel > (int64_t(1) << 32) / t.size[d]) return Corrupt("tensor " + name + " is too large");
      numel *= t.size[d];
      if (t.size[d] > 0) last += __int128(t.size[d] - 1) * t.stride[d];
    }
    if (t.offset < 0 || (numel > 0 && last >= s.numel))
      return Corrupt("tensor " + name + " reaches past the end of its storage");
    tt.data.resize(size_t(numel));
    const char* base = bytes[s.key].data();
    std::vector<int64_t> idx(t.size.size(), 0);
    for (int64_t n = 0; n < numel; ++n) {  // row-major walk over the strided view
      int64_t e = t.offset;
      for (size_t d = 0; d < idx.size(); ++d) e += idx[d] * t.stride[d];
      tt.data[size_t(n)] = Element(base + e * s.element_size, s.dtype);
      for (size_t d = idx.size(); d-- > 0;) {
        if (++idx[d] < t.size[d]) break;
        idx[d] = 0;
      }
    }
    out[name] = std::move(tt);
  }
  if (out.empty()) return Unsupported("the checkpoint holds no tensors");
  return out;
}

StatusOr<std::string> ReadAll(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return NotFound("cannot open the checkpoint " + p.string());
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The legacy stream: magic number, protocol version, system info, the state dict's pickle, the
// storage keys' pickle, then per key an int64 element count and the elements.
StatusOr<StateDict> ReadLegacy(const std::string& data) {
  std::string_view rest = data;
  auto small = [&rest](Unpickler& u) -> StatusOr<int> {
    size_t used = 0;
    auto v = u.Load(&used);
    if (v.ok()) rest.remove_prefix(used);
    return v;
  };
  Unpickler magic(rest);
  auto m = small(magic);
  if (!m.ok()) return m.status();
  static const std::string kMagic("\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19", 10);  // 0x1950a86a20f9469cfc6c
  if (magic.at(*m).kind != Value::kBigInt || magic.at(*m).s != kMagic) return Corrupt("not a PyTorch checkpoint (no magic number)");
  Unpickler proto(rest);
  auto p = small(proto);
  if (!p.ok()) return p.status();
  if (proto.at(*p).kind != Value::kInt || proto.at(*p).i != 1001)
    return Unsupported("legacy checkpoint protocol " + std::to_string(proto.at(*p).i) + " (only 1001 is known)");
  Unpickler info(rest);
  auto si = small(info);
  if (!si.ok()) return si.status();
  if (info.at(*si).kind != Value::kDict) return Corrupt("the checkpoint's system information is not a dict");
  for (const auto& [k, v] : info.at(*si).entries)
    if (info.at(k).s == "little_endian" && !info.at(v).i) return Unsupported("a big-endian checkpoint");

  Unpickler main(rest);
  auto root = small(main);
  if (!root.ok()) return root.status();
  Unpickler keys(rest);
  auto kl = small(keys);
  if (!kl.ok()) return kl.status();
  if (keys.at(*kl).kind != Value::kList) return Corrupt("the checkpoint's storage keys are not a list");
  std::map<std::string, std::string_view> stored;
  for (int k : keys.at(*kl).items) {
    if (keys.at(k).kind != Value::kStr) return Corrupt("a storage key that is not a string");
    auto ref = main.storages().find(keys.at(k).s);
    if (ref == main.storages().end()) return Corrupt("storage " + keys.at(k).s + " is stored but never used");
    if (rest.size() < 8) return Corrupt("the checkpoint ends before storage " + ref->first + " (truncated?)");
    int64_t numel;
    std::memcpy(&numel, rest.data(), 8);
    rest.remove_prefix(8);
    if (numel != ref->second.numel) return Corrupt("storage " + ref->first + " has " + std::to_string(numel) + " elements, the pickle says " + std::to_string(ref->second.numel));
    const size_t n = size_t(numel) * size_t(ref->second.element_size);
    if (rest.size() < n) return Corrupt("the checkpoint ends inside storage " + ref->first + " (truncated?)");
    stored[ref->first] = rest.substr(0, n);
    rest.remove_prefix(n);
  }
  return Materialise(main, *root, [&stored](const std::string& key, size_t) -> StatusOr<std::string> {
    auto it = stored.find(key);
    if (it == stored.end()) return Corrupt("storage " + key + " is missing from the checkpoint");
    return std::string(it->second);
  });
}

// The zip archive: <dir>/data.pkl and <dir>/data/<key> (stored, one entry per storage).
StatusOr<StateDict> ReadZip(const std::string& data, const std::string& file) {
  zip_error_t err;
  zip_error_init(&err);
  zip_source_t* src = zip_source_buffer_create(data.data(), data.size(), 0, &err);
  zip_t* z = src ? zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &err) : nullptr;
  if (!z) {
    std::string why = zip_error_strerror(&err);
    if (src) zip_source_free(src);
    zip_error_fini(&err);
    return Corrupt("the checkpoint " + file + " is not a readable zip archive (" + why + ")");
  }
  zip_error_fini(&err);
  std::unique_ptr<zip_t, void (*)(zip_t*)> owner(z, [](zip_t* a) { zip_discard(a); });
  auto entry = [z](const std::string& name, size_t limit) -> StatusOr<std::string> {
    zip_stat_t st;
    if (zip_stat(z, name.c_str(), 0, &st) != 0) return Corrupt("the checkpoint has no entry " + name);
    if (!(st.valid & ZIP_STAT_SIZE) || st.size > limit) return Corrupt("entry " + name + " has an unexpected size");
    std::unique_ptr<zip_file_t, int (*)(zip_file_t*)> f(zip_fopen(z, name.c_str(), 0), zip_fclose);
    if (!f) return Corrupt("cannot open entry " + name + ": " + zip_strerror(z));
    std::string out(size_t(st.size), '\0');
    zip_int64_t got = zip_fread(f.get(), out.data(), out.size());
    if (got < 0 || size_t(got) != out.size()) return Corrupt("entry " + name + " is truncated");
    return out;
  };
  std::string prefix;
  for (zip_int64_t i = 0, n = zip_get_num_entries(z, 0); i < n; ++i) {
    std::string name = zip_get_name(z, zip_uint64_t(i), 0) ? zip_get_name(z, zip_uint64_t(i), 0) : "";
    if (name.size() >= 9 && name.compare(name.size() - 9, 9, "/data.pkl") == 0 &&
        name.find('/') == name.size() - 9) {
      prefix = name.substr(0, name.size() - 8);
      break;
    }
  }
  if (prefix.empty()) return Corrupt("the checkpoint's zip archive has no data.pkl");
  auto pickle = entry(prefix + "data.pkl", size_t(1) << 30);
  if (!pickle.ok()) return pickle.status();
  Unpickler u(*pickle);
  size_t used = 0;
  auto root = u.Load(&used);
  if (!root.ok()) return root.status();
  return Materialise(u, *root, [&](const std::string& key, size_t bytes) -> StatusOr<std::string> {
    if (key.empty() || key.find_first_of("/\\.") != std::string::npos) return Corrupt("a storage key that is not a plain name");
    return entry(prefix + "data/" + key, bytes);
  });
}

}  // namespace

int64_t TorchTensor::numel() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

StatusOr<StateDict> ParseStateDictPickle(std::string_view pickle, const StorageReader& storage) {
  Unpickler u(pickle);
  size_t used = 0;
  auto root = u.Load(&used);
  if (!root.ok()) return root.status();
  return Materialise(u, *root, storage);
}

StatusOr<StateDict> ReadTorchCheckpoint(const std::filesystem::path& file) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(file, ec);
  if (ec) return NotFound("cannot open the checkpoint " + file.string());
  if (size > (uintmax_t(1) << 32)) return TooLarge("the checkpoint " + file.string() + " is over 4 GiB");
  auto data = ReadAll(file);
  if (!data.ok()) return data.status();
  return ParseTorchCheckpoint(*data, file.string());
}

StatusOr<StateDict> ParseTorchCheckpoint(const std::string& data, const std::string& name) {
  if (data.size() >= 4 && data.compare(0, 4, "PK\x03\x04") == 0) return ReadZip(data, name);
  if (data.size() >= 2 && uint8_t(data[0]) == 0x80) {
    auto sd = ReadLegacy(data);
    if (!sd.ok()) return Status(sd.status().code(), name + ": " + sd.status().message());
    return sd;
  }
  return Corrupt(name + " is neither a zip nor a legacy PyTorch checkpoint");
}

}  // namespace zeroqc
