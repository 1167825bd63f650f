#include "features/torch_checkpoint.h"

#include <zip.h>

#include <cstring>
#include <fstream>

#include <gtest/gtest.h>

#include "features/torch_convert.h"
#include "test_support.h"

namespace zeroqc {
namespace {

// Pickle opcodes written out, so that each test states exactly what the checkpoint holds.
struct Pickle {
  std::string b = "\x80\x02";
  Pickle& Op(char c) { return b += c, *this; }
  Pickle& Str(const std::string& s) {
    b += 'X';
    uint32_t n = uint32_t(s.size());
    b.append(reinterpret_cast<const char*>(&n), 4);
    return b += s, *this;
  }
  Pickle& Int(uint8_t v) { return b += 'K', b += char(v), *this; }
  Pickle& Global(const std::string& module, const std::string& name) { return b += "c" + module + "\n" + name + "\n", *this; }
  // _rebuild_tensor_v2(storage key of `numel` floats, offset, size, stride, False, OrderedDict())
  Pickle& Tensor(const std::string& key, uint8_t numel, std::vector<uint8_t> size, std::vector<uint8_t> stride,
                 const std::string& type = "FloatStorage") {
    Global("torch._utils", "_rebuild_tensor_v2").Op('(');
    Op('(').Str("storage").Global("torch", type).Str(key).Str("cpu").Int(numel).Op('t').Op('Q');
    Int(0).Op('(');
    for (auto s : size) Int(s);
    Op('t').Op('(');
    for (auto s : stride) Int(s);
    Op('t').Op('\x89').Global("collections", "OrderedDict").Op(')').Op('R').Op('t').Op('R');
    return *this;
  }
  std::string Done() { return b + "."; }
};

std::string Floats(std::vector<float> v) { return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4); }

// A zip-format checkpoint as torch.save writes it: archive/data.pkl, archive/data/<key>.
void WriteZip(const std::filesystem::path& p, const std::string& pickle, const std::map<std::string, std::string>& storages) {
  int err = 0;
  zip_t* z = zip_open(p.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &err);
  ASSERT_NE(z, nullptr);
  std::vector<std::string> keep{pickle};
  auto add = [&](const std::string& name, const std::string& bytes) {
    zip_source_t* s = zip_source_buffer(z, bytes.data(), bytes.size(), 0);
    ASSERT_GE(zip_file_add(z, name.c_str(), s, ZIP_FL_OVERWRITE), 0);
  };
  add("archive/data.pkl", keep[0]);
  for (const auto& [k, v] : storages) add("archive/data/" + k, v);
  ASSERT_EQ(zip_close(z), 0);
}

const std::filesystem::path kLite0 = testing::SourceDir() / ".deps" / "efficientnet" / "efficientnet-lite0.pth";

TEST(TorchCheckpoint, ReadsTheZipFormatWithStridedViewsAndIntegerTensors) {
  Pickle p;
  p.Global("collections", "OrderedDict").Op(')').Op('R').Op('(');
  p.Str("w").Tensor("0", 6, {2, 3}, {1, 2});  // a transposed view of 0..5
  p.Str("n").Tensor("1", 1, {}, {}, "LongStorage");
  p.Op('u');
  auto file = testing::TempDir() / "tiny.pth";
  int64_t seven = 7;
  WriteZip(file, p.Done(), {{"0", Floats({0, 1, 2, 3, 4, 5})}, {"1", std::string(reinterpret_cast<char*>(&seven), 8)}});
  auto sd = ReadTorchCheckpoint(file);
  ASSERT_TRUE(sd.ok()) << sd.status().message();
  ASSERT_EQ(sd->size(), 2u);
  EXPECT_EQ(sd->at("w").shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(sd->at("w").data, (std::vector<float>{0, 2, 4, 1, 3, 5}));
  EXPECT_EQ(sd->at("n").data, (std::vector<float>{7}));
}

TEST(TorchCheckpoint, ReadsTheLegacyFormatOfTheLiteWheels) {
  if (!std::filesystem::exists(kLite0)) GTEST_SKIP() << kLite0 << " missing: run ./setup.sh";
  auto sd = ReadTorchCheckpoint(kLite0);
  ASSERT_TRUE(sd.ok()) << sd.status().message();
  EXPECT_EQ(sd->at("_conv_stem.weight").shape, (std::vector<int64_t>{32, 3, 3, 3}));
  EXPECT_EQ(sd->at("_fc.weight").shape, (std::vector<int64_t>{1000, 1280}));
  EXPECT_EQ(sd->at("_blocks.15._depthwise_conv.weight").shape, (std::vector<int64_t>{1152, 1, 3, 3}));
  // BatchNorm variances are never negative and almost all positive: the bytes landed where the
  // shapes say (a shifted read gives negative floats and garbage exponents).
  size_t positive = 0, all = 0;
  for (const auto& [name, t] : *sd)
    if (name.find("running_var") != std::string::npos)
      for (float v : t.data) {
        ASSERT_GE(v, 0.f) << name;
        ASSERT_LT(v, 1e4f) << name;
        positive += v > 0, ++all;
      }
  EXPECT_GT(positive, all * 99 / 100);
}

TEST(TorchCheckpoint, RefusesAPickleThatCallsAnythingButTheTensorRebuild) {
  Pickle p;
  p.Global("os", "system").Str("touch /tmp/zeroqc-pwned").Op('\x85').Op('R');
  auto sd = ParseStateDictPickle(p.Done(), [](const std::string&, size_t) -> StatusOr<std::string> { return std::string(); });
  ASSERT_FALSE(sd.ok());
  EXPECT_EQ(sd.status().code(), Code::kUnsupported);
  EXPECT_NE(sd.status().message().find("os.system"), std::string::npos) << sd.status().message();
  EXPECT_NE(sd.status().message().find("refused"), std::string::npos) << sd.status().message();
  EXPECT_FALSE(std::filesystem::exists("/tmp/zeroqc-pwned"));

  // The same with STACK_GLOBAL (protocol 4), and an allowed global used as a constructor.
  Pickle q;
  q.Str("builtins").Str("eval").Op('\x93');
  sd = ParseStateDictPickle(q.Done(), {});
  ASSERT_FALSE(sd.ok());
  EXPECT_NE(sd.status().message().find("builtins.eval"), std::string::npos) << sd.status().message();
  Pickle r;  // NEWOBJ, INST, OBJ are not part of a state dict
  r.Global("collections", "OrderedDict").Op(')').Op('\x81');
  sd = ParseStateDictPickle(r.Done(), {});
  ASSERT_FALSE(sd.ok());
  EXPECT_NE(sd.status().message().find("opcode 0x81"), std::string::npos) << sd.status().message();
}

TEST(TorchCheckpoint, RefusesTruncatedAndInconsistentCheckpoints) {
  // A truncated zip archive.
  Pickle p;
  p.Op('}').Op('(').Str("w").Tensor("0", 4, {4}, {1}).Op('u');
  auto file = testing::TempDir() / "whole.pth";
  WriteZip(file, p.Done(), {{"0", Floats({1, 2, 3, 4})}});
  std::ifstream in(file, std::ios::binary);
  std::string bytes(std::istreambuf_iterator<char>(in), {});
  auto cut = testing::TempDir() / "cut.pth";
  std::ofstream(cut, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  auto sd = ReadTorchCheckpoint(cut);
  ASSERT_FALSE(sd.ok());
  EXPECT_EQ(sd.status().code(), Code::kCorrupt) << sd.status().message();

  // A tensor that reads past its storage, a storage shorter than it says, a pickle cut short.
  auto storage = [](const std::string& bytes) {
    return [bytes](const std::string&, size_t) -> StatusOr<std::string> { return bytes; };
  };
  Pickle past;
  past.Op('}').Op('(').Str("w").Tensor("0", 4, {3}, {2}).Op('u');
  sd = ParseStateDictPickle(past.Done(), storage(Floats({1, 2, 3, 4})));
  ASSERT_FALSE(sd.ok());
  EXPECT_NE(sd.status().message().find("past the end of its storage"), std::string::npos) << sd.status().message();
  sd = ParseStateDictPickle(p.Done(), storage(Floats({1, 2})));
  ASSERT_FALSE(sd.ok());
  EXPECT_NE(sd.status().message().find("holds 8 bytes, not 16"), std::string::npos) << sd.status().message();
  const std::string whole = p.Done();
  sd = ParseStateDictPickle(whole.substr(0, whole.size() - 10), storage(Floats({1, 2, 3, 4})));
  ASSERT_FALSE(sd.ok());
  EXPECT_EQ(sd.status().code(), Code::kCorrupt) << sd.status().message();

  // Containers nested a thousand deep are refused before they are built.
  Pickle deep;
  deep.Op(')');
  for (int i = 0; i < 1000; ++i) deep.Op('\x85');
  sd = ParseStateDictPickle(deep.Done(), {});
  ASSERT_FALSE(sd.ok());
  EXPECT_NE(sd.status().message().find("nested"), std::string::npos) << sd.status().message();

  // The real legacy file cut in the middle of its storages.
  if (!std::filesystem::exists(kLite0)) GTEST_SKIP() << kLite0 << " missing: run ./setup.sh";
  std::ifstream lin(kLite0, std::ios::binary);
  std::string legacy(std::istreambuf_iterator<char>(lin), {});
  std::ofstream(cut, std::ios::binary) << legacy.substr(0, legacy.size() * 3 / 5);
  sd = ReadTorchCheckpoint(cut);
  ASSERT_FALSE(sd.ok());
  EXPECT_NE(sd.status().message().find("truncated"), std::string::npos) << sd.status().message();
}

TEST(TorchCheckpoint, AStateDictOfTheWrongShapeIsNamedWhenConverted) {
  if (!std::filesystem::exists(kLite0)) GTEST_SKIP() << kLite0 << " missing: run ./setup.sh";
  auto sd = ReadTorchCheckpoint(kLite0);
  ASSERT_TRUE(sd.ok()) << sd.status().message();
  TorchConvertOptions opt;
  opt.arch = "efficientnet-lite2";  // wider and deeper than the lite0 weights
  Status st = ConvertStateDictToOnnx(*sd, opt, testing::TempDir() / "wrong.onnx");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("is not efficientnet-lite2"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("expected"), std::string::npos) << st.message();
  opt.arch = "resnet-50";
  st = ConvertStateDictToOnnx(*sd, opt, testing::TempDir() / "wrong.onnx");
  EXPECT_NE(st.message().find("unknown architecture"), std::string::npos) << st.message();
  opt.arch = "efficientnet-lite0";
  opt.outputs = {"block99"};
  st = ConvertStateDictToOnnx(*sd, opt, testing::TempDir() / "wrong.onnx");
  EXPECT_NE(st.message().find("no output 'block99'"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace zeroqc
