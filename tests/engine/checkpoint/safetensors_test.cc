#include "engine/checkpoint/safetensors.h"

#include <sys/stat.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/engine/checkpoint/test_files.h"

namespace jamba {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing_files::LengthField;
using testing_files::ReadBytes;
using testing_files::ReadLengthField;
using testing_files::SafetensorsBytes;
using testing_files::TempDir;
using testing_files::WriteBytes;
using Json = nlohmann::json;

const std::string kModels = std::string(JAMBA_TEST_DATA_DIR) + "/models";

std::string Message(const absl::Status& s) { return std::string(s.message()); }

// ---- Files written by the Python `safetensors` library (the test fixtures) -----------------

// Reads the header with nothing but the format definition: 8-byte little-endian length, JSON.
Json ReferenceHeader(const std::string& bytes) {
  uint64_t n = ReadLengthField(bytes);
  EXPECT_LE(n + 8, bytes.size());
  return Json::parse(bytes.substr(8, n));
}

class FixtureFileTest : public ::testing::TestWithParam<std::string> {};

TEST_P(FixtureFileTest, MatchesHeaderAndBytes) {
  const std::string path = kModels + "/" + GetParam();
  const std::string bytes = ReadBytes(path);
  const Json header = ReferenceHeader(bytes);
  const size_t data_start = 8 + ReadLengthField(bytes);

  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->path(), path);

  size_t tensors = 0;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      for (auto m = it->begin(); m != it->end(); ++m) {
        EXPECT_EQ((*file)->metadata().at(m.key()), m->get<std::string>());
      }
      continue;
    }
    ++tensors;
    const SafetensorsTensor* t = (*file)->Find(it.key());
    ASSERT_NE(t, nullptr) << it.key();
    EXPECT_EQ(t->name, it.key());
    EXPECT_EQ(t->file, path);
    const std::string dtype = (*it)["dtype"].get<std::string>();
    const std::map<std::string, DType> dtypes = {{"F32", DType::kF32},
                                                 {"BF16", DType::kBF16},
                                                 {"F16", DType::kF16},
                                                 {"I32", DType::kI32},
                                                 {"I64", DType::kI64}};
    ASSERT_TRUE(dtypes.count(dtype)) << dtype;
    EXPECT_EQ(t->dtype, dtypes.at(dtype)) << it.key();
    EXPECT_EQ(t->shape, (*it)["shape"].get<std::vector<int64_t>>()) << it.key();
    const uint64_t begin = (*it)["data_offsets"][0].get<uint64_t>();
    const uint64_t end = (*it)["data_offsets"][1].get<uint64_t>();
    ASSERT_EQ(t->nbytes, end - begin) << it.key();
    EXPECT_EQ(static_cast<size_t>(t->numel()) * DTypeSize(t->dtype), t->nbytes);
    EXPECT_EQ(std::memcmp(t->data, bytes.data() + data_start + begin, t->nbytes), 0) << it.key();
  }
  EXPECT_EQ((*file)->tensors().size(), tensors);
  EXPECT_GT(tensors, 0u);
}

INSTANTIATE_TEST_SUITE_P(Models, FixtureFileTest,
                         ::testing::Values("jamba_moe_gqa/model.safetensors",
                                           "jamba_dense/model.safetensors",
                                           "mamba/model.safetensors",
                                           "falcon_mamba/model.safetensors",
                                           "mixtral/model.safetensors",
                                           "jamba_auto_dtrank/model-00001-of-00003.safetensors",
                                           "jamba_auto_dtrank/model-00002-of-00003.safetensors",
                                           "jamba_auto_dtrank/model-00003-of-00003.safetensors",
                                           "mamba/reference.safetensors"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param;
                           for (char& c : name) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return name;
                         });

// Values computed by the Python `safetensors` + torch libraries (independent of this parser):
//   t = safe_open(path, "pt").get_tensor(name); t.double().sum(), t.flatten()[:2]
struct KnownTensor {
  std::string file;
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  double sum;
  float first[2];
};

float ElementAsF32(const SafetensorsTensor& t, int64_t i) {
  if (t.dtype == DType::kF32) {
    float v;
    std::memcpy(&v, t.data + 4 * i, 4);
    return v;
  }
  uint16_t v;
  std::memcpy(&v, t.data + 2 * i, 2);
  return t.dtype == DType::kBF16 ? Bf16ToF32(v) : F16ToF32(v);
}

TEST(SafetensorsFixtureTest, ValuesMatchPythonSafetensors) {
  const std::vector<KnownTensor> known = {
      {"jamba_moe_gqa/model.safetensors",
       "model.embed_tokens.weight",
       DType::kF32,
       {256, 32},
       109.01937517890474,
       {-0.5305590033531189f, -1.1299705505371094f}},
      {"jamba_moe_gqa/model.safetensors",
       "model.layers.0.mamba.A_log",
       DType::kF32,
       {64, 8},
       649.6972305958625,
       {2.042802333831787f, -0.06442306935787201f}},
      {"jamba_moe_gqa/model.safetensors",
       "model.layers.1.self_attn.k_proj.weight",
       DType::kF32,
       {16, 32},
       -13.291018058080226,
       {-0.36479440331459045f, -0.06033145636320114f}},
      {"jamba_dense/model.safetensors",
       "model.embed_tokens.weight",
       DType::kF16,
       {256, 32},
       -35.583547592163086,
       {0.07427978515625f, -0.39990234375f}},
      {"jamba_dense/model.safetensors",
       "model.final_layernorm.weight",
       DType::kF16,
       {32},
       32.99609375,
       {1.0302734375f, 0.958984375f}},
      {"mamba/model.safetensors",
       "backbone.layers.1.mixer.conv1d.weight",
       DType::kF32,
       {64, 1, 4},
       0.2697911432478577,
       {-0.416043221950531f, 0.6411555409431458f}},
      {"falcon_mamba/model.safetensors",
       "backbone.layers.0.mixer.x_proj.weight",
       DType::kF32,
       {20, 64},
       10.691551284719026,
       {-0.20529426634311676f, -0.05118143931031227f}},
      {"mixtral/model.safetensors",
       "model.layers.0.block_sparse_moe.experts.2.w3.weight",
       DType::kF32,
       {32, 32},
       1.7783105338166934,
       {0.07337168604135513f, 0.027874503284692764f}},
      {"jamba_auto_dtrank/model-00001-of-00003.safetensors",
       "model.layers.1.feed_forward.experts.gate_up_proj",
       DType::kBF16,
       {4, 48, 40},
       -7.540140390396118,
       {-0.0296630859375f, -0.08935546875f}},
      {"jamba_auto_dtrank/model-00003-of-00003.safetensors",
       "lm_head.weight",
       DType::kBF16,
       {256, 40},
       -15.054776906967163,
       {0.00543212890625f, 0.65625f}},
  };
  for (const KnownTensor& k : known) {
    SCOPED_TRACE(k.file + " " + k.name);
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
        SafetensorsFile::Open(kModels + "/" + k.file);
    ASSERT_TRUE(file.ok()) << file.status();
    const SafetensorsTensor* t = (*file)->Find(k.name);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->dtype, k.dtype);
    EXPECT_EQ(t->shape, k.shape);
    double sum = 0;
    for (int64_t i = 0; i < t->numel(); ++i) sum += ElementAsF32(*t, i);
    EXPECT_NEAR(sum, k.sum, 1e-9 * t->numel() + 1e-12);
    EXPECT_EQ(ElementAsF32(*t, 0), k.first[0]);
    EXPECT_EQ(ElementAsF32(*t, 1), k.first[1]);
  }
}

// ---- Writer round trip ----------------------------------------------------------------------

std::string F32Bytes(const std::vector<float>& v) {
  std::string s(v.size() * 4, '\0');
  std::memcpy(s.data(), v.data(), s.size());
  return s;
}

TEST(SafetensorsWriteTest, RoundTripAllDTypesAndMetadata) {
  TempDir dir;
  const std::string path = dir / "w.safetensors";
  std::map<std::string, SafetensorsWriteTensor> tensors = {
      {"a.f32", {DType::kF32, {2, 3}, F32Bytes({1, 2, 3, 4, 5, 6})}},
      {"b.bf16", {DType::kBF16, {3}, std::string("\x80\x3f\x00\x40\x40\x40", 6)}},
      {"c.f16", {DType::kF16, {1}, std::string("\x00\x3c", 2)}},
      {"d.i32", {DType::kI32, {1}, std::string("\x07\x00\x00\x00", 4)}},
      {"e.i64", {DType::kI64, {1, 1}, std::string("\xff\xff\xff\xff\xff\xff\xff\xff", 8)}},
      {"f.i8", {DType::kI8, {3}, "xyz"}},
      {"g.u8", {DType::kU8, {0, 5}, ""}},  // empty tensors are legal
      {"h.scalar", {DType::kF32, {}, F32Bytes({-2.5f})}},
  };
  ASSERT_TRUE(WriteSafetensors(path, tensors, {{"format", "pt"}}).ok());

  // The header is padded so the data section starts 8-byte aligned, as the reference writer
  // does, and the length field counts the padding.
  const std::string bytes = ReadBytes(path);
  EXPECT_EQ(ReadLengthField(bytes) % 8, 0u);
  const Json header = Json::parse(bytes.substr(8, ReadLengthField(bytes)));
  EXPECT_EQ(header["a.f32"]["dtype"], "F32");
  EXPECT_EQ(header["b.bf16"]["dtype"], "BF16");
  EXPECT_EQ(header["e.i64"]["dtype"], "I64");
  EXPECT_EQ(header["__metadata__"]["format"], "pt");

  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->metadata().at("format"), "pt");
  ASSERT_EQ((*file)->tensors().size(), tensors.size());
  for (const auto& [name, want] : tensors) {
    const SafetensorsTensor* t = (*file)->Find(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(t->dtype, want.dtype) << name;
    EXPECT_EQ(t->shape, want.shape) << name;
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(t->data), t->nbytes), want.bytes) << name;
  }
  EXPECT_EQ((*file)->Find("h.scalar")->numel(), 1);
  EXPECT_EQ((*file)->Find("g.u8")->numel(), 0);
  EXPECT_EQ((*file)->Find("absent"), nullptr);
}

TEST(SafetensorsWriteTest, RejectsInconsistentInput) {
  TempDir dir;
  absl::Status s = WriteSafetensors(dir / "x", {{"w", {DType::kF32, {2}, "abc"}}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s), HasSubstr("tensor 'w'"));
  s = WriteSafetensors(dir / "x", {{"__metadata__", {DType::kU8, {1}, "a"}}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  s = WriteSafetensors(dir / "x", {{"w", {DType::kU8, {-1}, ""}}});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  s = WriteSafetensors(dir / "no/such/dir/x", {{"w", {DType::kU8, {1}, "a"}}});
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(Message(s), HasSubstr("no/such/dir/x"));
}

// ---- Malformed files --------------------------------------------------------------------------

struct BadFile {
  std::string name;
  std::string bytes;   // the whole file
  std::string want;    // substring of the message, after the path
  std::string tensor;  // the tensor the message must name ("" when none is involved)
};

std::string Repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

// A well-formed two-tensor file ("a": F32 [2] at [0, 8], "b": F16 [2] at [8, 12]), the base
// the single-defect cases below start from.
const char kGoodHeader[] = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                           R"("b":{"dtype":"F16","shape":[2],"data_offsets":[8,12]}})";
const std::string kGoodData = std::string(12, '\x01');

std::vector<BadFile> BadFiles() {
  const uint64_t kU64Max = std::numeric_limits<uint64_t>::max();
  auto one = [](const std::string& entry) { return std::string(R"({"w":)") + entry + "}"; };
  return {
      {"empty", "", "file is 0 bytes, too short for the 8-byte header length", ""},
      {"short_length", std::string("\x02\x00\x00", 3), "file is 3 bytes", ""},
      {"length_past_end", LengthField(1000) + "{}", "header length 1000 exceeds the 2 bytes", ""},
      {"length_u64_max", LengthField(kU64Max) + "{}", "header length 18446744073709551615 exceeds",
       ""},
      {"length_huge", LengthField(uint64_t{1} << 40) + "{}",
       "header length 1099511627776 exceeds the limit of 100000000 bytes", ""},
      {"length_one_short", LengthField(1) + "{}", "JSON header: malformed JSON at byte", ""},
      {"bad_json", SafetensorsBytes(R"({"w": {"dtype": )", ""),
       "JSON header: malformed JSON at byte", ""},
      {"not_utf8", SafetensorsBytes("{\"\xff\":1}", ""), "JSON header: malformed JSON", ""},
      {"array_header", SafetensorsBytes("[1,2]", ""), "header must be a JSON object, got array",
       ""},
      {"string_header", SafetensorsBytes("\"x\"", ""), "header must be a JSON object, got string",
       ""},
      {"duplicate_tensor",
       SafetensorsBytes(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                        R"("w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                        "ab"),
       "JSON header: duplicate key 'w'", "w"},
      {"duplicate_field",
       SafetensorsBytes(one(R"({"dtype":"U8","dtype":"F32","shape":[1],"data_offsets":[0,1]})"),
                        "a"),
       "JSON header: duplicate key 'dtype' (in 'w')", "w"},
      {"deep_nesting", SafetensorsBytes(one(Repeat("[", 100000) + Repeat("]", 100000)), ""),
       "JSON header: JSON nested deeper than 64 levels", ""},
      {"entry_not_object", SafetensorsBytes(one("[1]"), ""),
       "tensor 'w': entry must be an object, got array", "w"},
      {"missing_dtype", SafetensorsBytes(one(R"({"shape":[1],"data_offsets":[0,1]})"), "a"),
       "tensor 'w': missing 'dtype'", "w"},
      {"unknown_dtype",
       SafetensorsBytes(one(R"({"dtype":"F8_E9","shape":[1],"data_offsets":[0,1]})"), "a"),
       "tensor 'w': unsupported dtype 'F8_E9'", "w"},
      {"unsupported_real_dtype",
       SafetensorsBytes(one(R"({"dtype":"F64","shape":[1],"data_offsets":[0,8]})"),
                        std::string(8, '\0')),
       "tensor 'w': unsupported dtype 'F64'", "w"},
      {"dtype_number",
       SafetensorsBytes(one(R"({"dtype":7,"shape":[1],"data_offsets":[0,1]})"), "a"),
       "tensor 'w': 'dtype' must be a string, got number", "w"},
      {"missing_shape", SafetensorsBytes(one(R"({"dtype":"U8","data_offsets":[0,1]})"), "a"),
       "tensor 'w': missing 'shape'", "w"},
      {"shape_not_list",
       SafetensorsBytes(one(R"({"dtype":"U8","shape":1,"data_offsets":[0,1]})"), "a"),
       "tensor 'w': 'shape' must be a list, got number", "w"},
      {"shape_negative",
       SafetensorsBytes(one(R"({"dtype":"U8","shape":[-1],"data_offsets":[0,1]})"), "a"),
       "tensor 'w': 'shape' entries must be non-negative integers, got -1", "w"},
      {"shape_float",
       SafetensorsBytes(one(R"({"dtype":"U8","shape":[1.5],"data_offsets":[0,1]})"), "a"),
       "tensor 'w': 'shape' entries must be non-negative integers, got 1.5", "w"},
      {"shape_nested",
       SafetensorsBytes(one(R"({"dtype":"U8","shape":[[1]],"data_offsets":[0,1]})"), "a"),
       "tensor 'w': 'shape' entries must be non-negative integers, got [1]", "w"},
      {"shape_overflow",
       SafetensorsBytes(
           one(R"({"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,0]})"), ""),
       "tensor 'w': shape [4611686018427387904, 4] is too large", "w"},
      {"shape_overflow_before_zero",
       SafetensorsBytes(
           one(R"({"dtype":"U8","shape":[4294967296,4294967296,0],"data_offsets":[0,0]})"), ""),
       "tensor 'w': shape [4294967296, 4294967296, 0] is too large", "w"},
      {"shape_bytes_overflow",
       SafetensorsBytes(
           one(R"({"dtype":"I64","shape":[2305843009213693952],"data_offsets":[0,0]})"), ""),
       "tensor 'w': shape [2305843009213693952] is too large", "w"},
      {"shape_u64",
       SafetensorsBytes(
           one(R"({"dtype":"U8","shape":[18446744073709551615],"data_offsets":[0,0]})"), ""),
       "tensor 'w': 'shape' entries must be non-negative integers, got 18446744073709551615", "w"},
      {"missing_offsets", SafetensorsBytes(one(R"({"dtype":"U8","shape":[1]})"), "a"),
       "tensor 'w': missing 'data_offsets'", "w"},
      {"offsets_one",
       SafetensorsBytes(one(R"({"dtype":"U8","shape":[1],"data_offsets":[0]})"), "a"),
       "tensor 'w': 'data_offsets' must be two non-negative integers, got [0]", "w"},
      {"offsets_negative",
       SafetensorsBytes(one(R"({"dtype":"U8","shape":[1],"data_offsets":[-1,0]})"), "a"),
       "tensor 'w': 'data_offsets' must be two non-negative integers, got [-1,0]", "w"},
      {"offsets_nested",
       SafetensorsBytes(one(R"({"dtype":"U8","shape":[1],"data_offsets":[[[[[[[[0]]]]]]],1]})"),
                        "a"),
       "tensor 'w': 'data_offsets' must be two non-negative integers, got array", "w"},
      {"offsets_reversed",
       SafetensorsBytes(one(R"({"dtype":"U8","shape":[1],"data_offsets":[1,0]})"), "a"),
       "tensor 'w': data_offsets [1, 0]: begin is after end", "w"},
      {"offsets_past_end",
       SafetensorsBytes(one(R"({"dtype":"U8","shape":[4],"data_offsets":[0,4]})"), "abc"),
       "tensor 'w': data_offsets [0, 4] run past the end of the data section (3 bytes)", "w"},
      {"offsets_u64_max",
       SafetensorsBytes(
           one(R"({"dtype":"U8","shape":[1],"data_offsets":[18446744073709551614,18446744073709551615]})"),
           "a"),
       "tensor 'w': 'data_offsets' must be two non-negative integers, got "
       "[18446744073709551614,18446744073709551615]",
       "w"},
      {"offsets_int64_max",
       SafetensorsBytes(
           one(R"({"dtype":"U8","shape":[1],"data_offsets":[9223372036854775806,9223372036854775807]})"),
           "a"),
       "tensor 'w': data_offsets [9223372036854775806, 9223372036854775807] run past the end of "
       "the data section (1 bytes)",
       "w"},
      {"size_mismatch",
       SafetensorsBytes(one(R"({"dtype":"F32","shape":[2,2],"data_offsets":[0,12]})"),
                        std::string(12, '\0')),
       "tensor 'w': data_offsets [0, 12] hold 12 bytes, but shape [2, 2] of F32 needs 16", "w"},
      {"truncated", SafetensorsBytes(kGoodHeader, kGoodData.substr(0, 11)),
       "tensor 'b': data_offsets [8, 12] run past the end of the data section (11 bytes)", "b"},
      {"trailing_bytes", SafetensorsBytes(kGoodHeader, kGoodData + "zz"),
       "the data section has 14 bytes but the tensors cover 12 (last: tensor 'b')", "b"},
      {"overlap",
       SafetensorsBytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                        R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                        std::string(12, '\0')),
       "tensor 'b': data_offsets [4, 12] overlap tensor 'a' which ends at 8", "b"},
      {"same_offsets",
       SafetensorsBytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                        R"("b":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}})",
                        std::string(8, '\0')),
       "tensor 'b': data_offsets [0, 8] overlap tensor 'a' which ends at 8", "b"},
      {"gap",
       SafetensorsBytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                        R"("b":{"dtype":"F16","shape":[2],"data_offsets":[12,16]}})",
                        std::string(16, '\0')),
       "tensor 'b': data_offsets [12, 16] leave bytes [8, 12) of the data section unused after "
       "tensor 'a'",
       "b"},
      {"not_from_zero",
       SafetensorsBytes(one(R"({"dtype":"U8","shape":[1],"data_offsets":[1,2]})"), "ab"),
       "tensor 'w': data_offsets [1, 2] leave bytes [0, 1) of the data section unused (the first "
       "tensor must start at 0)",
       "w"},
      {"no_tensors_but_data", SafetensorsBytes("{}", "x"),
       "the data section has 1 bytes but the tensors cover 0 (no tensors)", ""},
      {"metadata_not_object", SafetensorsBytes(R"({"__metadata__":[]})", ""),
       "'__metadata__' must be an object, got array", ""},
      {"metadata_value", SafetensorsBytes(R"({"__metadata__":{"format":1}})", ""),
       "'__metadata__' value of 'format' must be a string, got number", ""},
      {"long_name", SafetensorsBytes("{\"" + std::string(100000, 'n') + R"(":{"dtype":"X"}})", ""),
       "tensor '" + std::string(200, 'n') + "...' (100000 bytes): unsupported dtype 'X'", ""},
  };
}

// Keeps gtest from printing the whole (possibly 200 kB) file when a case fails.
void PrintTo(const BadFile& f, std::ostream* os) { *os << f.name; }

class BadFileTest : public ::testing::TestWithParam<BadFile> {};

TEST_P(BadFileTest, OpenFailsNamingFileAndTensor) {
  const BadFile& p = GetParam();
  TempDir dir;
  const std::string path = dir / (p.name + ".safetensors");
  WriteBytes(path, p.bytes);
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path);
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument) << file.status();
  const std::string message = Message(file.status());
  EXPECT_THAT(message, HasSubstr(path + ": " + p.want));
  if (!p.tensor.empty()) {
    EXPECT_THAT(message, HasSubstr("'" + p.tensor + "'"));
  }
  EXPECT_LT(message.size(), 1000u) << "messages stay readable";

  // The in-memory parser (used by the fuzzer) says the same.
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> parsed = SafetensorsFile::Parse(
      reinterpret_cast<const uint8_t*>(p.bytes.data()), p.bytes.size(), "buffer");
  ASSERT_FALSE(parsed.ok());
  EXPECT_THAT(Message(parsed.status()), HasSubstr("buffer: " + p.want));
}

INSTANTIATE_TEST_SUITE_P(Malformed, BadFileTest, ::testing::ValuesIn(BadFiles()),
                         [](const ::testing::TestParamInfo<BadFile>& info) {
                           return info.param.name;
                         });

TEST(SafetensorsTest, GoodBaseFileParses) {
  // The base of the single-defect cases is itself valid, so each case tests only its defect.
  const std::string bytes = SafetensorsBytes(kGoodHeader, kGoodData);
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
      SafetensorsFile::Parse(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "good");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->Find("a")->nbytes, 8u);
  EXPECT_EQ((*file)->Find("b")->data,
            reinterpret_cast<const uint8_t*>(bytes.data()) + 8 + std::strlen(kGoodHeader) + 8);
}

TEST(SafetensorsTest, AcceptsPaddingTensorOrderAndEmptyTensors) {
  // Header padded with spaces (the reference writer's 8-byte alignment); JSON order differs
  // from offset order; a zero-size tensor sits between two others.
  const std::string header = R"({"z":{"dtype":"U8","shape":[2],"data_offsets":[3,5]},)"
                             R"("e":{"dtype":"F32","shape":[0,3],"data_offsets":[3,3]},)"
                             R"("a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]}})"
                             "      ";
  const std::string bytes = SafetensorsBytes(header, "abcde");
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
      SafetensorsFile::Parse(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "ok");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(std::string(reinterpret_cast<const char*>((*file)->Find("z")->data), 2), "de");
  EXPECT_EQ((*file)->Find("e")->nbytes, 0u);
  EXPECT_EQ((*file)->Find("e")->numel(), 0);
}

TEST(SafetensorsTest, NotARegularFile) {
  TempDir dir;
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(dir.path());
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(file.status()), HasSubstr(dir.path() + ": not a regular file"));

  // A FIFO must be refused, not block waiting for a writer.
  const std::string fifo = dir / "fifo.safetensors";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  file = SafetensorsFile::Open(fifo);
  ASSERT_FALSE(file.ok());
  EXPECT_THAT(Message(file.status()), HasSubstr(fifo + ": not a regular file"));
}

TEST(SafetensorsTest, MissingFile) {
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
      SafetensorsFile::Open("/nonexistent/x.safetensors");
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Message(file.status()), HasSubstr("/nonexistent/x.safetensors: cannot open"));
}

TEST(SafetensorsTest, EveryTruncationOfARealFileIsRejected) {
  // Cutting a real file anywhere must yield an error, never a crash or a successful parse
  // with a tensor pointing past the end.
  const std::string bytes = ReadBytes(kModels + "/mamba/reference.safetensors");
  const size_t data_start = 8 + ReadLengthField(bytes);
  std::vector<size_t> cuts;
  for (size_t n = 0; n < data_start + 64; ++n) cuts.push_back(n);
  for (size_t n = data_start + 64; n < bytes.size(); n += 997) cuts.push_back(n);
  cuts.push_back(bytes.size() - 1);
  for (size_t n : cuts) {
    const std::string cut = bytes.substr(0, n);
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
        SafetensorsFile::Parse(reinterpret_cast<const uint8_t*>(cut.data()), cut.size(), "cut");
    ASSERT_FALSE(file.ok()) << "cut at " << n;
    EXPECT_THAT(Message(file.status()), HasSubstr("cut: ")) << n;
  }
}

TEST(SafetensorsTest, LyingLengthFieldOfARealFile) {
  const std::string bytes = ReadBytes(kModels + "/mamba/reference.safetensors");
  const uint64_t n = ReadLengthField(bytes);
  for (uint64_t lie : {n - 1, n + 1, n + 8, n / 2, uint64_t{0}}) {
    const std::string changed = LengthField(lie) + bytes.substr(8);
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Parse(
        reinterpret_cast<const uint8_t*>(changed.data()), changed.size(), "lie");
    EXPECT_FALSE(file.ok()) << lie;
  }
}

TEST(SafetensorsTest, ShiftedOffsetsOfARealFile) {
  // Every tensor's offsets moved by one element: bounds stay plausible, tiling does not.
  const std::string bytes = ReadBytes(kModels + "/mamba/reference.safetensors");
  Json header = ReferenceHeader(bytes);
  const std::string data = bytes.substr(8 + ReadLengthField(bytes));
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    Json changed = header;
    Json& offsets = changed[it.key()]["data_offsets"];
    offsets[0] = offsets[0].get<uint64_t>() + 4;
    offsets[1] = offsets[1].get<uint64_t>() + 4;
    const std::string file_bytes = SafetensorsBytes(changed.dump(), data);
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Parse(
        reinterpret_cast<const uint8_t*>(file_bytes.data()), file_bytes.size(), "shifted");
    ASSERT_FALSE(file.ok()) << it.key();
    EXPECT_THAT(Message(file.status()), HasSubstr("'" + it.key() + "'"));
  }
}

}  // namespace
}  // namespace jamba
