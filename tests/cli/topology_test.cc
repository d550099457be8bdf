#include "cli/topology.h"

#include <stdlib.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "cli/flag_parser.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace jamba {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kValid[] = R"({
  "layer_workers": [
    {"address": "jamba-layer-0.jamba-layer:50051", "layers": "0:4"},
    {"address": "jamba-layer-1.jamba-layer:50051", "layers": "4:8"}
  ],
  "expert_workers": [
    {"address": "jamba-expert-0.jamba-expert:50061", "experts": "1:0,1;3:0,1"},
    {"address": "jamba-expert-1.jamba-expert:50061", "experts": "all"}
  ]
})";

// Layer 0 again starts another pipeline: entries 2 and 3 are the second set of stages.
TEST(TopologyTest, LayerZeroAgainStartsAnotherPipeline) {
  absl::StatusOr<Topology> t = ParseTopology(R"({
    "layer_workers": [
      {"address": "l-0:1", "layers": "0:4"}, {"address": "l-1:1", "layers": "4:8"},
      {"address": "l-2:1", "layers": "0:3"}, {"address": "l-3:1", "layers": "3:8"}
    ]})");
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->Pipelines().size(), 2u);
  EXPECT_THAT(t->Pipelines()[0], ElementsAre("l-0:1", "l-1:1"));
  EXPECT_THAT(t->Pipelines()[1], ElementsAre("l-2:1", "l-3:1"));
  absl::StatusOr<Topology> one = ParseTopology(kValid);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->Pipelines().size(), 1u);
  // Anything but the previous end or 0 is still an error.
  absl::StatusOr<Topology> bad = ParseTopology(R"({
    "layer_workers": [
      {"address": "l-0:1", "layers": "0:4"}, {"address": "l-1:1", "layers": "4:8"},
      {"address": "l-2:1", "layers": "1:8"}]})");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()),
              HasSubstr("layer_workers[2].layers: '1:8' does not start at layer 8"));
}

TEST(TopologyTest, ParsesAValidFile) {
  absl::StatusOr<Topology> t = ParseTopology(kValid);
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(t->layer_workers.size(), 2u);
  EXPECT_EQ(t->layer_workers[1].layers, "4:8");
  EXPECT_EQ(t->layer_workers[1].layer_begin, 4);
  EXPECT_EQ(t->layer_workers[1].layer_end, 8);
  EXPECT_THAT(t->LayerWorkerAddresses(),
              ElementsAre("jamba-layer-0.jamba-layer:50051", "jamba-layer-1.jamba-layer:50051"));
  EXPECT_THAT(t->ExpertWorkerAddresses(), ElementsAre("jamba-expert-0.jamba-expert:50061",
                                                      "jamba-expert-1.jamba-expert:50061"));
  absl::StatusOr<TopologyExpertWorker> e0 = t->ExpertWorker(0);
  ASSERT_TRUE(e0.ok()) << e0.status();
  EXPECT_EQ(e0->experts, "1:0,1;3:0,1");
  absl::StatusOr<TopologyLayerWorker> l1 = t->LayerWorker(1);
  ASSERT_TRUE(l1.ok()) << l1.status();
  EXPECT_EQ(l1->address, "jamba-layer-1.jamba-layer:50051");
}

TEST(TopologyTest, ExpertWorkersAreOptional) {
  absl::StatusOr<Topology> t =
      ParseTopology(R"({"layer_workers": [{"address": "a:1", "layers": "0:2"}]})");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_TRUE(t->expert_workers.empty());
  EXPECT_TRUE(t->ExpertWorkerAddresses().empty());
}

TEST(TopologyTest, OrdinalOutOfRangeNamesTheListSize) {
  absl::StatusOr<Topology> t = ParseTopology(kValid);
  ASSERT_TRUE(t.ok()) << t.status();
  absl::StatusOr<TopologyLayerWorker> l = t->LayerWorker(2);
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(l.status().message(), HasSubstr("ordinal 2 is out of range"));
  EXPECT_THAT(l.status().message(), HasSubstr("2 layer_workers"));
  EXPECT_FALSE(t->ExpertWorker(5).ok());
  EXPECT_FALSE(t->LayerWorker(-1).ok());
}

struct MalformedCase {
  const char* name;
  const char* json;
  const char* error;  // a substring of the message
};

class MalformedTopologyTest : public ::testing::TestWithParam<MalformedCase> {};

TEST_P(MalformedTopologyTest, IsRejectedWithANamedError) {
  absl::StatusOr<Topology> t = ParseTopology(GetParam().json);
  ASSERT_FALSE(t.ok()) << GetParam().name;
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(t.status().message(), HasSubstr("topology: "));
  EXPECT_THAT(t.status().message(), HasSubstr(GetParam().error));
}

constexpr char kL0[] = R"({"address": "l0:1", "layers": "0:4"})";

INSTANTIATE_TEST_SUITE_P(
    Cases, MalformedTopologyTest,
    ::testing::Values(
        MalformedCase{"NotJson", "{\"layer_workers\": [", "not valid JSON"},
        MalformedCase{"NotAnObject", "[1, 2]", "expected a JSON object"},
        MalformedCase{"UnknownTopLevelKey",
                      R"({"layer_workers": [{"address": "a:1", "layers": "0:1"}], "layers": 1})",
                      "unknown key 'layers'"},
        MalformedCase{"MissingLayerWorkers", R"({"expert_workers": []})", "layer_workers: missing"},
        MalformedCase{"EmptyLayerWorkers", R"({"layer_workers": []})", "layer_workers: empty"},
        MalformedCase{"LayerWorkersNotAList", R"({"layer_workers": {"a": 1}})",
                      "layer_workers: expected a list"},
        MalformedCase{"EntryNotAnObject", R"({"layer_workers": ["a:1"]})",
                      "layer_workers[0]: expected an object"},
        MalformedCase{"UnknownEntryKey",
                      R"({"layer_workers": [{"address": "a:1", "layers": "0:1", "gpu": 1}]})",
                      "layer_workers[0]: unknown key 'gpu'"},
        MalformedCase{"MissingAddress", R"({"layer_workers": [{"layers": "0:1"}]})",
                      "layer_workers[0]: missing 'address'"},
        MalformedCase{"AddressNotAString",
                      R"({"layer_workers": [{"address": 5, "layers": "0:1"}]})",
                      "layer_workers[0].address: expected a string"},
        MalformedCase{"AddressWithoutPort",
                      R"({"layer_workers": [{"address": "jamba-layer-0", "layers": "0:1"}]})",
                      "layer_workers[0].address: expected HOST:PORT"},
        MalformedCase{"AddressPortOutOfRange",
                      R"({"layer_workers": [{"address": "a:70000", "layers": "0:1"}]})",
                      "expected HOST:PORT with PORT in [1, 65535]"},
        MalformedCase{"AddressWithoutHost",
                      R"({"layer_workers": [{"address": ":80", "layers": "0:1"}]})",
                      "expected HOST:PORT"},
        MalformedCase{"MissingLayers", R"({"layer_workers": [{"address": "a:1"}]})",
                      "layer_workers[0]: missing 'layers'"},
        MalformedCase{"EmptyLayers", R"({"layer_workers": [{"address": "a:1", "layers": ""}]})",
                      "layer_workers[0].layers: empty"},
        MalformedCase{"LayersNotARange",
                      R"({"layer_workers": [{"address": "a:1", "layers": "0-4"}]})",
                      "expected BEGIN:END"},
        MalformedCase{"LayersAllIsNotAllowed",
                      R"({"layer_workers": [{"address": "a:1", "layers": "all"}]})",
                      "expected BEGIN:END"},
        MalformedCase{"LayersEmptyRange",
                      R"({"layer_workers": [{"address": "a:1", "layers": "3:3"}]})",
                      "expected BEGIN:END with 0 <= BEGIN < END"},
        MalformedCase{"FirstStageNotAtZero",
                      R"({"layer_workers": [{"address": "a:1", "layers": "1:4"}]})",
                      "does not start at layer 0"},
        MalformedCase{"GapBetweenStages",
                      R"({"layer_workers": [{"address": "l0:1", "layers": "0:4"},
                                            {"address": "l1:1", "layers": "5:8"}]})",
                      "layer_workers[1].layers: '5:8' does not start at layer 4"},
        MalformedCase{"OverlappingStages",
                      R"({"layer_workers": [{"address": "l0:1", "layers": "0:4"},
                                            {"address": "l1:1", "layers": "2:8"}]})",
                      "layer_workers[1].layers: '2:8' does not start at layer 4"},
        MalformedCase{"DuplicateAddress",
                      R"({"layer_workers": [{"address": "l0:1", "layers": "0:4"}],
                          "expert_workers": [{"address": "l0:1", "experts": "all"}]})",
                      "expert_workers[0].address: 'l0:1' is given to another worker too"},
        MalformedCase{"ExpertWorkersNotAList",
                      R"({"layer_workers": [{"address": "l0:1", "layers": "0:4"}],
                          "expert_workers": "e0:1"})",
                      "expert_workers: expected a list"},
        MalformedCase{"MissingExperts",
                      R"({"layer_workers": [{"address": "l0:1", "layers": "0:4"}],
                          "expert_workers": [{"address": "e0:1"}]})",
                      "expert_workers[0]: missing 'experts'"},
        MalformedCase{"BadExperts",
                      R"({"layer_workers": [{"address": "l0:1", "layers": "0:4"}],
                          "expert_workers": [{"address": "e0:1", "experts": "1:x"}]})",
                      "expert_workers[0]: experts: 'x' in '1:x' is not an expert index"},
        MalformedCase{"ExpertEntryUsesLayersKey",
                      R"({"layer_workers": [{"address": "l0:1", "layers": "0:4"}],
                          "expert_workers": [{"address": "e0:1", "layers": "0:4"}]})",
                      "expert_workers[0]: unknown key 'layers'"}),
    [](const ::testing::TestParamInfo<MalformedCase>& info) { return info.param.name; });

TEST(TopologyTest, OrdinalFromHostname) {
  struct Case {
    const char* host;
    int64_t ordinal;
  };
  for (const Case& c :
       {Case{"jamba-layer-0", 0}, Case{"jamba-layer-1", 1}, Case{"jamba-expert-12", 12},
        Case{"web-3.jamba-layer.ns.svc", 3}, Case{"x-7", 7}}) {
    absl::StatusOr<int64_t> n = OrdinalFromHostname(c.host);
    ASSERT_TRUE(n.ok()) << c.host << ": " << n.status();
    EXPECT_EQ(*n, c.ordinal) << c.host;
  }
  for (const char* bad :
       {"", "jamba", "jamba-", "-3", "jamba-layer-x", "jamba-layer-1a", "jamba-layer--1",
        "jamba-layer-+1", "jamba-layer-99999999999", "jamba.layer-1"}) {
    absl::StatusOr<int64_t> n = OrdinalFromHostname(bad);
    EXPECT_FALSE(n.ok()) << "'" << bad << "' gave " << (n.ok() ? *n : -1);
    if (!n.ok()) {
      EXPECT_THAT(n.status().message(), HasSubstr("does not end in -N")) << bad;
    }
  }
}

TEST(TopologyTest, ParseLayerRange) {
  int64_t b = 0, e = 0;
  ASSERT_TRUE(ParseLayerRange("2:5", false, &b, &e).ok());
  EXPECT_EQ(b, 2);
  EXPECT_EQ(e, 5);
  ASSERT_TRUE(ParseLayerRange("all", true, &b, &e).ok());
  EXPECT_EQ(b, 0);
  EXPECT_EQ(e, -1);
  EXPECT_FALSE(ParseLayerRange("all", false, &b, &e).ok());
  EXPECT_FALSE(ParseLayerRange("5:2", true, &b, &e).ok());
  EXPECT_FALSE(ParseLayerRange("-1:2", true, &b, &e).ok());
  EXPECT_FALSE(ParseLayerRange("1:2:3", true, &b, &e).ok());
}

TEST(TopologyTest, ListenPortMustMatchOwnAddress) {
  EXPECT_TRUE(CheckListenPort("0.0.0.0:50051", "jamba-layer-0.jamba-layer:50051").ok());
  absl::Status s = CheckListenPort("0.0.0.0:50052", "jamba-layer-0.jamba-layer:50051");
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("must use the port"));
  EXPECT_FALSE(CheckListenPort("0.0.0.0:0", "a:50051").ok());
}

TEST(TopologyTest, ReadTopologyFileNamesThePath) {
  const std::string dir = ::testing::TempDir();
  const std::string good = dir + "/topology_test_good.json";
  const std::string bad = dir + "/topology_test_bad.json";
  std::ofstream(good) << kValid;
  std::ofstream(bad) << R"({"layer_workers": []})";
  absl::StatusOr<Topology> t = ReadTopologyFile(good);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->layer_workers.size(), 2u);

  absl::StatusOr<Topology> b = ReadTopologyFile(bad);
  ASSERT_FALSE(b.ok());
  EXPECT_THAT(b.status().message(), HasSubstr(bad));
  EXPECT_THAT(b.status().message(), HasSubstr("layer_workers: empty"));

  absl::StatusOr<Topology> missing = ReadTopologyFile(dir + "/no_such_topology.json");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("no_such_topology.json"));
  std::remove(good.c_str());
  std::remove(bad.c_str());
}

// The flags as a worker main registers them.
absl::StatusOr<int64_t> ResolveFrom(std::vector<const char*> args) {
  TopologyFlags topology;
  FlagParser flags("test", "test");
  AddTopologyFlags(&flags, &topology, /*with_ordinal=*/true);
  args.insert(args.begin(), "prog");
  absl::Status parsed = flags.Parse(static_cast<int>(args.size()), args.data(), 1);
  if (!parsed.ok()) return parsed;
  return ResolveOrdinal(topology);
}

TEST(TopologyTest, ResolveOrdinal) {
  absl::StatusOr<int64_t> none = ResolveFrom({});
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(*none, -1);

  absl::StatusOr<int64_t> given = ResolveFrom({"--topology", "t.json", "--ordinal", "3"});
  ASSERT_TRUE(given.ok()) << given.status();
  EXPECT_EQ(*given, 3);

  ASSERT_EQ(setenv("HOSTNAME", "jamba-expert-4", 1), 0);
  absl::StatusOr<int64_t> host = ResolveFrom({"--topology", "t.json", "--ordinal-from-hostname"});
  ASSERT_TRUE(host.ok()) << host.status();
  EXPECT_EQ(*host, 4);
  ASSERT_EQ(setenv("HOSTNAME", "jamba-expert", 1), 0);
  EXPECT_FALSE(ResolveFrom({"--topology", "t.json", "--ordinal-from-hostname"}).ok());

  EXPECT_FALSE(ResolveFrom({"--topology", "t.json"}).ok());  // neither
  EXPECT_FALSE(
      ResolveFrom({"--topology", "t.json", "--ordinal", "1", "--ordinal-from-hostname"}).ok());
  EXPECT_FALSE(ResolveFrom({"--ordinal", "1"}).ok());  // without --topology
  EXPECT_FALSE(ResolveFrom({"--ordinal-from-hostname"}).ok());
  EXPECT_FALSE(ResolveFrom({"--topology", "t.json", "--ordinal", "-1"}).ok());
}

TEST(TopologyTest, WorkerEntriesFromTheFile) {
  const std::string path = ::testing::TempDir() + "/topology_test_workers.json";
  std::ofstream(path) << kValid;
  TopologyFlags flags;
  flags.file = path;
  flags.ordinal = 1;
  Topology whole;
  absl::StatusOr<absl::optional<TopologyLayerWorker>> layer =
      LayerWorkerFromTopology(flags, "0.0.0.0:50051", &whole);
  ASSERT_TRUE(layer.ok()) << layer.status();
  ASSERT_TRUE(layer->has_value());
  EXPECT_EQ((*layer)->layers, "4:8");
  EXPECT_EQ(whole.expert_workers.size(), 2u);

  absl::StatusOr<absl::optional<TopologyExpertWorker>> expert =
      ExpertWorkerFromTopology(flags, "[::]:50061");
  ASSERT_TRUE(expert.ok()) << expert.status();
  ASSERT_TRUE(expert->has_value());
  EXPECT_EQ((*expert)->experts, "all");

  // The wrong port for this entry, and an ordinal beyond the list.
  EXPECT_FALSE(ExpertWorkerFromTopology(flags, "0.0.0.0:50051").ok());
  flags.ordinal = 2;
  absl::StatusOr<absl::optional<TopologyLayerWorker>> beyond =
      LayerWorkerFromTopology(flags, "0.0.0.0:50051", nullptr);
  ASSERT_FALSE(beyond.ok());
  EXPECT_THAT(beyond.status().message(), HasSubstr("out of range"));

  // No --topology: nothing to take.
  absl::StatusOr<absl::optional<TopologyExpertWorker>> none =
      ExpertWorkerFromTopology(TopologyFlags{}, "0.0.0.0:1");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->has_value());

  flags.ordinal = 0;
  flags.file = ::testing::TempDir() + "/no_such_topology.json";
  EXPECT_FALSE(LayerWorkerFromTopology(flags, "0.0.0.0:50051", nullptr).ok());
  std::remove(path.c_str());
}

TEST(TopologyTest, ShardFlagsConflictWithTopology) {
  TopologyFlags topology;
  std::string layers;
  FlagParser flags("test", "test");
  AddTopologyFlags(&flags, &topology, /*with_ordinal=*/true);
  flags.String("layers", &layers, "layers");
  std::vector<const char*> args = {"prog", "--topology", "t.json", "--ordinal",
                                   "0",    "--layers",   "0:4"};
  ASSERT_TRUE(flags.Parse(static_cast<int>(args.size()), args.data(), 1).ok());
  absl::Status s = RejectReplacedFlags(flags, topology, {"expert-workers", "layers"});
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("--layers comes from --topology"));
  EXPECT_TRUE(RejectReplacedFlags(flags, topology, {"expert-workers"}).ok());
  topology.file.clear();
  EXPECT_TRUE(RejectReplacedFlags(flags, topology, {"layers"}).ok());
}

}  // namespace
}  // namespace jamba
