// The layout of a cluster deployed as StatefulSets (deploy/k8s): which layer range and which
// experts each worker pod holds, and the stable address it is reached at. The same file (a
// ConfigMap) is mounted into every pod; a worker pod knows its StatefulSet ordinal (the
// trailing -N of its pod name) and takes entry N of its role's list, so scaling or re-sharding
// is an edit of one file plus the StatefulSets' replica counts.
//
// Format (JSON). Unknown keys are errors, so a misspelt key cannot silently fall back to a
// default:
//   {
//     "layer_workers": [                      // required, non-empty, in stage order
//       {"address": "jamba-layer-0.jamba-layer:50051", "layers": "0:4"},
//       {"address": "jamba-layer-1.jamba-layer:50051", "layers": "4:8"}
//     ],
//     "expert_workers": [                     // optional; empty: layer workers hold experts
//       {"address": "jamba-expert-0.jamba-expert:50061", "experts": "1:0,1;3:0,1"},
//       {"address": "jamba-expert-1.jamba-expert:50061", "experts": "1:2,3;3:2,3"}
//     ]
//   }
// - Entry i of a list is the pod with ordinal i of that role's StatefulSet.
// - "layers" is BEGIN:END (END exclusive); the ranges must be contiguous from 0 in list order.
//   An entry starting at layer 0 again begins another pipeline (a full set of stages; the
//   gateway spreads sequences over the pipelines, which share the expert workers). Whether
//   each pipeline's last END is the model's layer count is checked by the gateway when it
//   connects (this file is read without the model).
// - "experts" uses jamba-expert-worker's --experts syntax ("all" or LAYER:E,E;LAYER:E,...).
//   Every layer worker sends MoE tokens to every expert worker listed; which worker holds which
//   expert is learnt from the workers themselves at connect time.
// - "address" is HOST:PORT as the other pods dial it (in Kubernetes the pod's stable DNS name
//   behind the headless Service); a worker's --listen port must equal its own address's port.
//   Addresses are unique.
#ifndef JAMBA_CLI_TOPOLOGY_H_
#define JAMBA_CLI_TOPOLOGY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/optional.h"

namespace jamba {

class FlagParser;

struct TopologyLayerWorker {
  std::string address;  // HOST:PORT
  std::string layers;   // as written, BEGIN:END
  int64_t layer_begin = 0, layer_end = 0;
};

struct TopologyExpertWorker {
  std::string address;  // HOST:PORT
  std::string experts;  // as written, an --experts spec
};

struct Topology {
  std::vector<TopologyLayerWorker> layer_workers;    // stage order; index = ordinal
  std::vector<TopologyExpertWorker> expert_workers;  // index = ordinal

  std::vector<std::string> LayerWorkerAddresses() const;
  // The layer workers grouped into pipelines, each in stage order.
  std::vector<std::vector<std::string>> Pipelines() const;
  std::vector<std::string> ExpertWorkerAddresses() const;
  // The entry of the pod with this ordinal; InvalidArgument naming the list's size if there is
  // none (the StatefulSet has more replicas than the topology has entries).
  absl::StatusOr<TopologyLayerWorker> LayerWorker(int64_t ordinal) const;
  absl::StatusOr<TopologyExpertWorker> ExpertWorker(int64_t ordinal) const;
};

// InvalidArgument naming the offending key or entry ("topology: layer_workers[1].layers: ...").
absl::StatusOr<Topology> ParseTopology(absl::string_view json_text);
// As ParseTopology; NotFound if the file cannot be read. Errors name the path.
absl::StatusOr<Topology> ReadTopologyFile(const std::string& path);

// "BEGIN:END" with 0 <= BEGIN < END; "all" only if `allow_all` (then *end = -1: up to the
// model's last layer). Errors start "layers: ".
absl::Status ParseLayerRange(absl::string_view text, bool allow_all, int64_t* begin, int64_t* end);

// The ordinal of a StatefulSet pod from its host name "<statefulset>-<N>" (a domain suffix,
// ".jamba-layer.ns.svc...", is ignored).
absl::StatusOr<int64_t> OrdinalFromHostname(absl::string_view hostname);
// $HOSTNAME if set and non-empty (Kubernetes sets it to the pod name), else gethostname().
std::string CurrentHostname();

// Checks that --listen's port is the port the other pods dial this worker at.
absl::Status CheckListenPort(absl::string_view listen, absl::string_view own_address);

// The flags of a worker main that can take its shard from a topology file.
struct TopologyFlags {
  std::string file;
  int64_t ordinal = -1;
  bool ordinal_from_hostname = false;
};
// Registers --topology and, for workers (`with_ordinal`), --ordinal and --ordinal-from-hostname.
void AddTopologyFlags(FlagParser* flags, TopologyFlags* topology, bool with_ordinal);
// For a worker main after parsing: usage errors for --ordinal / --ordinal-from-hostname without
// --topology, or both or neither of them with it; otherwise the pod's ordinal (-1 without
// --topology).
absl::StatusOr<int64_t> ResolveOrdinal(const TopologyFlags& topology);

// --topology replaces the flags `names` (the shard and peer flags); giving one of them too is a
// usage error rather than a silent override.
absl::Status RejectReplacedFlags(const FlagParser& flags, const TopologyFlags& topology,
                                 const std::vector<std::string>& names);

// For the worker mains: nullopt without --topology; otherwise this pod's entry (and the whole
// file in *topology where asked). Errors, all usage errors: the ordinal flags as in
// ResolveOrdinal, an unreadable or invalid file, an ordinal outside the role's list, a --listen
// port other than the entry's address's.
absl::StatusOr<absl::optional<TopologyLayerWorker>> LayerWorkerFromTopology(
    const TopologyFlags& flags, absl::string_view listen, Topology* topology);
absl::StatusOr<absl::optional<TopologyExpertWorker>> ExpertWorkerFromTopology(
    const TopologyFlags& flags, absl::string_view listen);

}  // namespace jamba

#endif  // JAMBA_CLI_TOPOLOGY_H_
