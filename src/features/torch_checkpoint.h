// Reads a PyTorch state dict (a `.pth` checkpoint of named tensors) without PyTorch.
//
// A checkpoint is untrusted input: Python's pickle can call any function. This reader runs its own
// small pickle machine that knows only what a state dict is made of (dicts, tuples, numbers,
// strings, the tensor rebuild and the storage types) and refuses any other global, opcode or shape
// with a message that names it. Both formats are read: the zip archive (torch >= 1.6: data.pkl and
// one entry per storage) and the legacy stream (magic, protocol, system info, the pickle, the
// storage keys, then each storage's bytes).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace zeroqc {

struct TorchTensor {
  std::vector<int64_t> shape;  // as PyTorch has it: a conv weight is [out, in / groups, kh, kw]
  std::vector<float> data;     // contiguous, row-major; integer and half tensors converted
  int64_t numel() const;
};

using StateDict = std::map<std::string, TorchTensor>;

// The state dict of `file`. A checkpoint whose top level is {"state_dict": {...}} or
// {"model": {...}} yields that inner dict. kCorrupt: truncated or inconsistent; kUnsupported: a
// global, opcode or storage type a state dict has no use for (the message names it).
StatusOr<StateDict> ReadTorchCheckpoint(const std::filesystem::path& file);
// The same from the file's bytes (`name` only labels messages); the fuzz target.
StatusOr<StateDict> ParseTorchCheckpoint(const std::string& bytes, const std::string& name);

// A state dict from one pickle: `pickle` holds it, and `storage(key, bytes)` gives the bytes of the
// storage named `key`, which must be `bytes` long. The two formats above are this plus a container.
using StorageReader = std::function<StatusOr<std::string>(const std::string& key, size_t bytes)>;
StatusOr<StateDict> ParseStateDictPickle(std::string_view pickle, const StorageReader& storage);

}  // namespace zeroqc
