#include "cli/topology.h"

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli/flag_parser.h"
#include "common/status_macros.h"
#include "expert-worker/expert_set.h"
#include "nlohmann/json.hpp"

namespace jamba {
namespace {

using nlohmann::json;

absl::Status Bad(absl::string_view where, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("topology: ", where, ": ", what));
}

// Unknown keys are errors: a misspelt optional key would otherwise be ignored silently.
absl::Status CheckKeys(const json& object, const std::set<std::string>& allowed,
                       absl::string_view where) {
  for (auto it = object.begin(); it != object.end(); ++it) {
    if (allowed.count(it.key()) == 0) {
      return Bad(where, absl::StrCat("unknown key '", it.key(),
                                     "' (expected one of: ", absl::StrJoin(allowed, ", "), ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> RequiredString(const json& object, const std::string& key,
                                           absl::string_view where) {
  auto it = object.find(key);
  if (it == object.end()) return Bad(where, absl::StrCat("missing '", key, "'"));
  if (!it->is_string()) return Bad(absl::StrCat(where, ".", key), "expected a string");
  std::string value = it->get<std::string>();
  if (value.empty()) return Bad(absl::StrCat(where, ".", key), "empty");
  return value;
}

// HOST:PORT with a non-empty host and a port in [1, 65535]. The port is returned.
absl::StatusOr<int> ParseHostPort(absl::string_view address) {
  size_t colon = address.rfind(':');
  int port = 0;
  if (colon == absl::string_view::npos || colon == 0 ||
      !absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 1 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected HOST:PORT with PORT in [1, 65535], got '", address, "'"));
  }
  return port;
}

// The entries of an optional/required array key; each must be an object with exactly
// {"address", `shard_key`}.
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ParseEntries(
    const json& root, const std::string& list, const std::string& shard_key, bool required,
    std::set<std::string>* addresses) {
  std::vector<std::pair<std::string, std::string>> entries;
  auto it = root.find(list);
  if (it == root.end()) {
    if (required) return Bad(list, "missing (a non-empty list of workers)");
    return entries;
  }
  if (!it->is_array()) return Bad(list, "expected a list");
  if (required && it->empty()) return Bad(list, "empty (at least one worker is needed)");
  for (size_t i = 0; i < it->size(); ++i) {
    const json& entry = (*it)[i];
    std::string where = absl::StrCat(list, "[", i, "]");
    if (!entry.is_object()) return Bad(where, "expected an object");
    JAMBA_RETURN_IF_ERROR(CheckKeys(entry, {"address", shard_key}, where));
    JAMBA_ASSIGN_OR_RETURN(std::string address, RequiredString(entry, "address", where));
    absl::StatusOr<int> port = ParseHostPort(address);
    if (!port.ok()) return Bad(absl::StrCat(where, ".address"), port.status().message());
    if (!addresses->insert(address).second) {
      return Bad(absl::StrCat(where, ".address"),
                 absl::StrCat("'", address, "' is given to another worker too"));
    }
    JAMBA_ASSIGN_OR_RETURN(std::string shard, RequiredString(entry, shard_key, where));
    entries.emplace_back(std::move(address), std::move(shard));
  }
  return entries;
}

absl::Status OutOfRange(int64_t ordinal, size_t size, absl::string_view list) {
  return absl::InvalidArgumentError(
      absl::StrCat("topology: ordinal ", ordinal, " is out of range: the topology has ", size, " ",
                   list, " (ordinals 0..", static_cast<int64_t>(size) - 1,
                   "); does the StatefulSet have more replicas than the topology entries?"));
}

}  // namespace

std::vector<std::string> Topology::LayerWorkerAddresses() const {
  std::vector<std::string> out;
  for (const TopologyLayerWorker& w : layer_workers) out.push_back(w.address);
  return out;
}

std::vector<std::vector<std::string>> Topology::Pipelines() const {
  std::vector<std::vector<std::string>> out;
  for (const TopologyLayerWorker& w : layer_workers) {
    if (w.layer_begin == 0 || out.empty()) out.emplace_back();
    out.back().push_back(w.address);
  }
  return out;
}

std::vector<std::string> Topology::ExpertWorkerAddresses() const {
  std::vector<std::string> out;
  for (const TopologyExpertWorker& w : expert_workers) out.push_back(w.address);
  return out;
}

absl::StatusOr<TopologyLayerWorker> Topology::LayerWorker(int64_t ordinal) const {
  if (ordinal < 0 || ordinal >= static_cast<int64_t>(layer_workers.size())) {
    return OutOfRange(ordinal, layer_workers.size(), "layer_workers");
  }
  return layer_workers[ordinal];
}

absl::StatusOr<TopologyExpertWorker> Topology::ExpertWorker(int64_t ordinal) const {
  if (ordinal < 0 || ordinal >= static_cast<int64_t>(expert_workers.size())) {
    return OutOfRange(ordinal, expert_workers.size(), "expert_workers");
  }
  return expert_workers[ordinal];
}

absl::Status ParseLayerRange(absl::string_view text, bool allow_all, int64_t* begin, int64_t* end) {
  if (allow_all && text == "all") {
    *begin = 0;
    *end = -1;
    return absl::OkStatus();
  }
  std::vector<std::string> parts = absl::StrSplit(text, ':');
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], begin) || !absl::SimpleAtoi(parts[1], end) ||
      *begin < 0 || *end <= *begin) {
    return absl::InvalidArgumentError(
        absl::StrCat("layers: expected BEGIN:END with 0 <= BEGIN < END",
                     allow_all ? ", or all" : "", "; got '", text, "'"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Topology> ParseTopology(absl::string_view json_text) {
  json root = json::parse(json_text.begin(), json_text.end(), nullptr,
                          /*allow_exceptions=*/false);
  if (root.is_discarded()) return Bad("file", "not valid JSON");
  if (!root.is_object()) return Bad("file", "expected a JSON object at the top");
  JAMBA_RETURN_IF_ERROR(CheckKeys(root, {"layer_workers", "expert_workers"}, "file"));

  std::set<std::string> addresses;
  Topology topology;
  JAMBA_ASSIGN_OR_RETURN(auto layer_entries,
                         ParseEntries(root, "layer_workers", "layers", true, &addresses));
  int64_t next = 0;
  for (size_t i = 0; i < layer_entries.size(); ++i) {
    TopologyLayerWorker w;
    w.address = layer_entries[i].first;
    w.layers = layer_entries[i].second;
    std::string where = absl::StrCat("layer_workers[", i, "]");
    absl::Status range =
        ParseLayerRange(w.layers, /*allow_all=*/false, &w.layer_begin, &w.layer_end);
    if (!range.ok()) return Bad(where, range.message());
    // Layer 0 after the first entry starts another pipeline (data parallel).
    if (w.layer_begin != next && !(i > 0 && w.layer_begin == 0)) {
      return Bad(absl::StrCat(where, ".layers"),
                 absl::StrCat("'", w.layers, "' does not start at layer ", next,
                              i == 0 ? " (the first stage starts at layer 0)"
                                     : " (where the previous stage ends) or at layer 0 (the "
                                       "first stage of another pipeline)"));
    }
    next = w.layer_end;
    topology.layer_workers.push_back(std::move(w));
  }

  JAMBA_ASSIGN_OR_RETURN(auto expert_entries,
                         ParseEntries(root, "expert_workers", "experts", false, &addresses));
  for (size_t i = 0; i < expert_entries.size(); ++i) {
    absl::StatusOr<ExpertSet> set = ParseExpertSet(expert_entries[i].second);
    if (!set.ok()) return Bad(absl::StrCat("expert_workers[", i, "]"), set.status().message());
    topology.expert_workers.push_back({expert_entries[i].first, expert_entries[i].second});
  }
  return topology;
}

absl::StatusOr<Topology> ReadTopologyFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("topology: cannot read '", path, "'"));
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<Topology> topology = ParseTopology(text.str());
  if (!topology.ok()) {
    return absl::Status(topology.status().code(),
                        absl::StrCat(path, ": ", topology.status().message()));
  }
  return topology;
}

absl::StatusOr<int64_t> OrdinalFromHostname(absl::string_view hostname) {
  absl::string_view name = hostname.substr(0, hostname.find('.'));
  size_t dash = name.rfind('-');
  int64_t ordinal = 0;
  if (dash == absl::string_view::npos || dash == 0 || name[dash - 1] == '-' ||
      dash + 1 == name.size() || !absl::ascii_isdigit(name[dash + 1]) ||
      !absl::SimpleAtoi(name.substr(dash + 1), &ordinal) || ordinal < 0 || ordinal > INT32_MAX) {
    return absl::InvalidArgumentError(
        absl::StrCat("host name '", hostname,
                     "' does not end in -N (StatefulSet pods are named <statefulset>-<ordinal>)"));
  }
  return ordinal;
}

std::string CurrentHostname() {
  const char* env = std::getenv("HOSTNAME");
  if (env != nullptr && *env != '\0') return env;
  char buffer[256] = {};
  if (gethostname(buffer, sizeof(buffer) - 1) != 0) return "";
  return buffer;
}

absl::Status CheckListenPort(absl::string_view listen, absl::string_view own_address) {
  absl::StatusOr<int> want = ParseHostPort(own_address);
  absl::StatusOr<int> have = ParseHostPort(listen);
  if (!want.ok() || !have.ok() || *want != *have) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--listen '", listen, "' must use the port of this worker's topology address '",
        own_address, "' (the other pods dial that address)"));
  }
  return absl::OkStatus();
}

void AddTopologyFlags(FlagParser* flags, TopologyFlags* topology, bool with_ordinal) {
  const std::string section = "topology (Kubernetes StatefulSets, see deploy/README.md)";
  if (!with_ordinal) {
    flags->String("topology", &topology->file,
                  "cluster layout JSON; the layer workers' addresses come from it (instead of "
                  "--layer-workers)",
                  section, "FILE");
    return;
  }
  flags->String("topology", &topology->file,
                "cluster layout JSON; this worker's shard and peers come from the entry of its "
                "ordinal (instead of the shard flags)",
                section, "FILE");
  flags->Custom(
      "ordinal",
      [topology](absl::string_view v) {
        int64_t n = 0;
        if (!absl::SimpleAtoi(v, &n) || n < 0) {
          return absl::InvalidArgumentError(
              absl::StrCat("--ordinal: expected an integer >= 0, got '", v, "'"));
        }
        topology->ordinal = n;
        return absl::OkStatus();
      },
      "N", "with --topology: this worker's index in its list", section);
  flags->Bool("ordinal-from-hostname", &topology->ordinal_from_hostname,
              "with --topology: the ordinal is the trailing -N of $HOSTNAME (a StatefulSet pod's "
              "name)",
              section);
}

absl::StatusOr<int64_t> ResolveOrdinal(const TopologyFlags& topology) {
  const bool explicit_ordinal = topology.ordinal >= 0;
  if (topology.file.empty()) {
    if (explicit_ordinal || topology.ordinal_from_hostname) {
      return absl::InvalidArgumentError("--ordinal and --ordinal-from-hostname need --topology");
    }
    return -1;
  }
  if (explicit_ordinal == topology.ordinal_from_hostname) {
    return absl::InvalidArgumentError(
        "--topology needs exactly one of --ordinal N and --ordinal-from-hostname");
  }
  if (explicit_ordinal) return topology.ordinal;
  return OrdinalFromHostname(CurrentHostname());
}

absl::Status RejectReplacedFlags(const FlagParser& flags, const TopologyFlags& topology,
                                 const std::vector<std::string>& names) {
  if (topology.file.empty()) return absl::OkStatus();
  for (const std::string& name : names) {
    if (flags.Seen(name)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", name, " comes from --topology; give one or the other, not both"));
    }
  }
  return absl::OkStatus();
}

namespace {

// The shared part of the worker lookups: the ordinal, then the file.
absl::StatusOr<absl::optional<std::pair<Topology, int64_t>>> LoadForWorker(
    const TopologyFlags& flags) {
  JAMBA_ASSIGN_OR_RETURN(int64_t ordinal, ResolveOrdinal(flags));
  if (ordinal < 0) return absl::nullopt;
  JAMBA_ASSIGN_OR_RETURN(Topology topology, ReadTopologyFile(flags.file));
  return std::make_pair(std::move(topology), ordinal);
}

}  // namespace

absl::StatusOr<absl::optional<TopologyLayerWorker>> LayerWorkerFromTopology(
    const TopologyFlags& flags, absl::string_view listen, Topology* topology) {
  JAMBA_ASSIGN_OR_RETURN(auto loaded, LoadForWorker(flags));
  if (!loaded) return absl::nullopt;
  JAMBA_ASSIGN_OR_RETURN(TopologyLayerWorker own, loaded->first.LayerWorker(loaded->second));
  JAMBA_RETURN_IF_ERROR(CheckListenPort(listen, own.address));
  if (topology != nullptr) *topology = std::move(loaded->first);
  return own;
}

absl::StatusOr<absl::optional<TopologyExpertWorker>> ExpertWorkerFromTopology(
    const TopologyFlags& flags, absl::string_view listen) {
  JAMBA_ASSIGN_OR_RETURN(auto loaded, LoadForWorker(flags));
  if (!loaded) return absl::nullopt;
  JAMBA_ASSIGN_OR_RETURN(TopologyExpertWorker own, loaded->first.ExpertWorker(loaded->second));
  JAMBA_RETURN_IF_ERROR(CheckListenPort(listen, own.address));
  return own;
}

}  // namespace jamba
