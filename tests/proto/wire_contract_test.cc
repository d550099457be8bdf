// The wire contracts as the rest of the cluster relies on them: which calls stream, and that
// activations travel as raw bytes (no per-element encoding overhead).
#include <cstring>
#include <vector>

#include "common/check.h"
#include "gtest/gtest.h"
#include "jamba/v1/expert_worker.grpc.pb.h"
#include "jamba/v1/generate.grpc.pb.h"
#include "jamba/v1/layer_worker.grpc.pb.h"

namespace jamba {
namespace {

const google::protobuf::ServiceDescriptor* Service(const char* name) {
  // Referencing a message of each file links its descriptors in from the static library.
  v1::GenerateRequest::descriptor();
  v1::ForwardRequest::descriptor();
  v1::ExpertRequest::descriptor();
  const auto* s = google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(name);
  JAMBA_CHECK_MSG(s != nullptr, "service not linked in");
  return s;
}

const google::protobuf::MethodDescriptor* Method(const google::protobuf::ServiceDescriptor* s,
                                                 const char* name) {
  const google::protobuf::MethodDescriptor* m = s->FindMethodByName(name);
  EXPECT_NE(m, nullptr) << s->full_name() << "." << name;
  return m;
}

TEST(WireContractTest, PublicApiStreamsGenerateOnly) {
  const auto* s = Service("jamba.v1.Jamba");
  EXPECT_EQ(s->full_name(), "jamba.v1.Jamba");
  const auto* generate = Method(s, "Generate");
  ASSERT_NE(generate, nullptr);
  EXPECT_TRUE(generate->server_streaming());
  EXPECT_FALSE(generate->client_streaming());
  for (const char* unary : {"GenerateUnary", "Tokenize", "Detokenize", "ModelInfo"}) {
    const auto* m = Method(s, unary);
    ASSERT_NE(m, nullptr);
    EXPECT_FALSE(m->server_streaming() || m->client_streaming()) << unary;
  }
}

TEST(WireContractTest, InternalServicesHaveTheirCalls) {
  for (const char* name : {"CreateSequences", "ReleaseSequences", "Forward", "ShardInfo"}) {
    Method(Service("jamba.v1.LayerWorker"), name);
  }
  for (const char* name : {"Compute", "ShardInfo"}) Method(Service("jamba.v1.ExpertWorker"), name);
}

TEST(WireContractTest, ActivationsAreRawBytes) {
  // 16 tokens x 4096 f32 (a Jamba-v0.1 batch): the encoding adds a few bytes, not 25%+ as
  // repeated floats or varints would.
  std::vector<float> values(16 * 4096);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i) * 0.5f - 7.0f;
  v1::Tensor t;
  t.set_dtype(v1::DTYPE_F32);
  t.add_shape(16);
  t.add_shape(4096);
  t.set_data(values.data(), values.size() * sizeof(float));
  const std::string wire = t.SerializeAsString();
  EXPECT_LT(wire.size(), values.size() * sizeof(float) + 32);
  v1::Tensor back;
  ASSERT_TRUE(back.ParseFromString(wire));
  ASSERT_EQ(back.data().size(), values.size() * sizeof(float));
  EXPECT_EQ(std::memcmp(back.data().data(), values.data(), back.data().size()), 0);
  EXPECT_EQ(back.shape(1), 4096);
}

TEST(WireContractTest, UnsetSamplingFieldsAreDistinguishable) {
  // temperature 0 means greedy, so "unset" (default 1.0) must differ from an explicit 0.
  v1::SamplingParams p;
  EXPECT_FALSE(p.has_temperature());
  p.set_temperature(0.0f);
  v1::SamplingParams back;
  ASSERT_TRUE(back.ParseFromString(p.SerializeAsString()));
  EXPECT_TRUE(back.has_temperature());
  EXPECT_EQ(back.temperature(), 0.0f);
}

}  // namespace
}  // namespace jamba
