// jamba-cluster-bench: decode throughput and per-step latency of local clusters (real
// processes on loopback: expert workers, layer workers, gateway, driven through the public
// gRPC API by concurrent streams) against the single-process engine on the same checkpoint
// and batch sizes, with the ratio. One cluster per combination of --pipeline-depth and
// --micro-batches runs for the whole benchmark; every round measures the single process and
// each cluster in turn at each batch size (interleaved, so the machine's drift hits all
// alike), and the figures are the medians over the rounds.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/bench_config.h"
#include "bench/engine_timing.h"
#include "cli/cluster_plan.h"
#include "cli/flag_parser.h"
#include "cli/local_cluster.h"
#include "client/client.h"
#include "common/status_macros.h"
#include "engine/checkpoint/checkpoint.h"
#include "engine/checkpoint/safetensors.h"
#include "engine/config/model_config.h"
#include "engine/runtime/engine.h"
#include "kernels/cpu_threads.h"

namespace jamba {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

struct Options {
  BenchModelFlags source;
  std::string work_dir = "/tmp/jamba-cluster-bench";
  std::string batches = "1,4,16";
  int32_t prompt_len = 16, decode_steps = 32, threads = 0;
  int32_t layer_workers = 2, expert_workers = 2, replicas = 1;
  std::string depths = "1,2", micro_batches = "1", pipelines = "1";
  int32_t rounds = 3;
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct Result {
  double tok_s = 0, step_ms = 0;
  // Per process (start order): CPU seconds / wall seconds over the decode window.
  std::vector<double> busy;
  std::vector<double> sys;  // the system (kernel) part of it
};

// CPU time a process has used so far, from /proc (user + system, or system alone); 0 if
// unreadable.
double CpuSeconds(pid_t pid, bool system_only = false) {
  std::ifstream f(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  if (!std::getline(f, line)) return 0;
  // Fields after the command name (which may hold spaces) start behind the last ')'.
  const size_t close = line.rfind(')');
  if (close == std::string::npos) return 0;
  std::vector<std::string> fields = absl::StrSplit(line.substr(close + 2), ' ');
  int64_t utime = 0, stime = 0;  // fields 14 and 15 of stat, 12 and 13 here
  if (fields.size() < 13 || !absl::SimpleAtoi(fields[11], &utime) ||
      !absl::SimpleAtoi(fields[12], &stime)) {
    return 0;
  }
  return static_cast<double>(system_only ? stime : utime + stime) /
         static_cast<double>(sysconf(_SC_CLK_TCK));
}

// Writes the synthetic checkpoint of `config_text` (random bf16 weights, engine/checkpoint/
// synthetic_weights.h) to `dir` as config.json + model.safetensors, so separate processes can
// load it.
absl::Status MaterializeSynthetic(const std::string& config_text, const std::string& dir) {
  JAMBA_ASSIGN_OR_RETURN(ModelConfig config, ParseModelConfig(config_text, "config.json"));
  std::unique_ptr<Backend> backend = CreateCpuBackend();
  LoadOptions load;
  load.weight_dtype = DType::kBF16;
  JAMBA_ASSIGN_OR_RETURN(std::unique_ptr<Model> model,
                         Model::Load(Checkpoint::Synthetic(config, 1234), load, backend.get()));
  Checkpoint* ckpt = model->mutable_checkpoint();
  std::map<std::string, SafetensorsWriteTensor> tensors;
  for (const std::string& name : ckpt->TensorNames()) {
    JAMBA_ASSIGN_OR_RETURN(const SafetensorsTensor* t, ckpt->Get(name));
    tensors[name] = SafetensorsWriteTensor{
        t->dtype, t->shape, std::string(reinterpret_cast<const char*>(t->data), t->nbytes)};
  }
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/config.json") << config_text;
  return WriteSafetensors(dir + "/model.safetensors", tensors, {{"format", "pt"}});
}

// `batch` concurrent greedy streams through the gateway. The decode window runs from the
// moment every stream has its third token (prefill and warm-up done) to the moment the first
// stream ends; tokens arriving inside it count.
absl::StatusOr<Result> Cluster(const std::string& gateway, const std::vector<pid_t>& pids,
                               int batch, int64_t vocab, const Options& o, std::mt19937* rng) {
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(vocab) - 1);
  std::vector<std::vector<Clock::time_point>> arrivals(batch);
  std::vector<absl::Status> errors(batch);
  std::vector<v1::GenerateRequest> requests(batch);
  for (int b = 0; b < batch; ++b) {
    for (int t = 0; t < o.prompt_len; ++t) requests[b].mutable_token_ids()->add_ids(token(*rng));
    v1::SamplingParams* s = requests[b].mutable_sampling();
    s->set_temperature(0);
    s->set_ignore_eos(true);
    s->set_max_new_tokens(o.decode_steps + 3);
  }
  JAMBA_ASSIGN_OR_RETURN(std::unique_ptr<client::Client> c, client::Client::Connect(gateway));
  // The processes' CPU time, sampled while the streams run, so the busy fractions cover the
  // decode window alone (prefill and the last streams' tail excluded).
  struct CpuSample {
    Clock::time_point at;
    std::vector<double> cpu, sys;
  };
  std::vector<CpuSample> samples;
  std::atomic<bool> sampling{true};
  auto sample = [&pids] {
    CpuSample x{Clock::now(), {}, {}};
    for (pid_t p : pids) {
      x.cpu.push_back(CpuSeconds(p));
      x.sys.push_back(CpuSeconds(p, true));
    }
    return x;
  };
  std::thread sampler([&] {
    while (sampling.load()) {
      samples.push_back(sample());
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  std::vector<std::thread> threads;
  for (int b = 0; b < batch; ++b) {
    threads.emplace_back([&, b] {
      std::unique_ptr<client::GenerateStream> stream = c->Generate(requests[b]);
      while (true) {
        absl::StatusOr<std::optional<v1::GenerateChunk>> chunk = stream->Next();
        if (!chunk.ok()) {
          errors[b] = chunk.status();
          return;
        }
        if (!chunk->has_value()) return;
        const auto now = Clock::now();
        for (int i = 0; i < (*chunk)->token_ids_size(); ++i) arrivals[b].push_back(now);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  sampling = false;
  sampler.join();
  Clock::time_point start = Clock::time_point::min(), end = Clock::time_point::max();
  for (int b = 0; b < batch; ++b) {
    JAMBA_RETURN_IF_ERROR(errors[b]);
    if (static_cast<int>(arrivals[b].size()) != o.decode_steps + 3) {
      return absl::InternalError(absl::StrCat("stream ", b, " got ", arrivals[b].size(),
                                              " tokens, expected ", o.decode_steps + 3));
    }
    start = std::max(start, arrivals[b][2]);
    end = std::min(end, arrivals[b].back());
  }
  int64_t tokens = 0;
  for (const auto& a : arrivals) {
    for (const auto& t : a) tokens += t > start && t <= end;
  }
  const double secs = Seconds(start, end);
  if (tokens == 0 || secs <= 0) return absl::InternalError("empty decode window");
  // The samples bracketing the window: the last at or before its start, the first after its end.
  size_t first = 0, last = samples.size() - 1;
  for (size_t i = 0; i < samples.size(); ++i) {
    if (samples[i].at <= start) first = i;
  }
  for (size_t i = samples.size(); i-- > 0;) {
    if (samples[i].at >= end) last = i;
  }
  std::vector<double> busy, sys;
  const double span = Seconds(samples[first].at, samples[last].at);
  for (size_t i = 0; i < pids.size(); ++i) {
    busy.push_back(span > 0 ? (samples[last].cpu[i] - samples[first].cpu[i]) / span : 0);
    sys.push_back(span > 0 ? (samples[last].sys[i] - samples[first].sys[i]) / span : 0);
  }
  return Result{tokens / secs, 1e3 * secs / (static_cast<double>(tokens) / batch), std::move(busy),
                std::move(sys)};
}

int Fail(const absl::Status& s) {
  std::cerr << "jamba-cluster-bench: " << s.message() << "\n";
  return 1;
}

int Run(int argc, char** argv) {
  Options o;
  FlagParser flags(
      "jamba-cluster-bench (--model DIR | --config config.json [--set KEY=VALUE ...]) [options]",
      "Decode throughput and per-step latency of a local cluster (expert workers, layer\n"
      "workers and the gateway as separate processes on loopback, driven by concurrent gRPC\n"
      "streams) against the single-process engine on the same checkpoint, with the ratio.\n"
      "With --config, random bf16 weights are written to --work-dir first.");
  AddBenchModelFlags(flags, &o.source);
  flags.String("work-dir", &o.work_dir, "where --config's checkpoint is written", "Model", "DIR");
  flags.String("batches", &o.batches, "batch sizes (concurrent streams)", "Run", "N,N,...");
  flags.Int32("prompt-len", &o.prompt_len, "prompt tokens per sequence", "Run");
  flags.Int32("decode-steps", &o.decode_steps, "timed decode steps", "Run");
  flags.Int32("threads", &o.threads, "CPU threads per process; 0 = all cores", "Run");
  flags.Int32("layer-workers", &o.layer_workers, "pipeline stages", "Cluster");
  flags.Int32("expert-workers", &o.expert_workers, "expert worker processes", "Cluster");
  flags.Int32("replicas", &o.replicas, "expert workers holding each expert", "Cluster");
  flags.String("pipeline-depth", &o.depths,
               "the gateway's batches in flight; one cluster per value (and per micro-batches "
               "value)",
               "Cluster", "N,N,...");
  flags.String("micro-batches", &o.micro_batches, "the layer workers' micro-batches per batch",
               "Cluster", "N,N,...");
  flags.String("pipelines", &o.pipelines,
               "sets of --layer-workers stages sharing the expert workers (data parallel)",
               "Cluster", "N,N,...");
  flags.Int32("rounds", &o.rounds, "measurements per figure (the median is printed)", "Run");
  if (absl::optional<int> exit = flags.ParseMain(argc, argv, "jamba-cluster-bench")) {
    return *exit;
  }
  if (o.source.model.empty() == o.source.config.empty() ||
      (o.source.weights != "f32" && o.source.weights != "bf16") || o.prompt_len < 1 ||
      o.decode_steps < 1 || o.threads < 0) {
    std::cerr << "jamba-cluster-bench: give exactly one of --model and --config; --weights "
                 "f32|bf16; --prompt-len, --decode-steps >= 1 (see --help)\n";
    return 2;
  }
  absl::StatusOr<std::vector<int>> parsed = ParseBatchSizes(o.batches, 256);
  absl::StatusOr<std::vector<int>> depths = ParseBatchSizes(o.depths, 64);
  absl::StatusOr<std::vector<int>> micro = ParseBatchSizes(o.micro_batches, 64);
  absl::StatusOr<std::vector<int>> pipelines = ParseBatchSizes(o.pipelines, 64);
  for (const absl::Status& s :
       {parsed.status(), depths.status(), micro.status(), pipelines.status()}) {
    if (!s.ok()) {
      std::cerr << "jamba-cluster-bench: " << s.message() << "\n";
      return 2;
    }
  }
  if (o.rounds < 1) {
    std::cerr << "jamba-cluster-bench: --rounds must be >= 1\n";
    return 2;
  }
  const std::vector<int>& batches = *parsed;
  const int max_batch = *std::max_element(batches.begin(), batches.end());
  SetCpuThreads(o.threads);
  std::string dir = o.source.model;
  if (dir.empty()) {
    auto text = ConfigWithOverrides(o.source.config, o.source.overrides);
    if (!text.ok()) return Fail(text.status());
    dir = o.work_dir;
    std::cerr << "writing random weights to " << dir << "\n";
    if (absl::Status s = MaterializeSynthetic(*text, dir); !s.ok()) return Fail(s);
  }
  auto config = LoadModelConfig(dir);
  if (!config.ok()) return Fail(config.status());
  std::mt19937 rng(7);

  // ---- The clusters: one per (pipelines, depth, micro-batches), all up for the whole run. --
  struct Layout {
    int pipelines, depth, micro;
    ClusterPlan plan;
    std::unique_ptr<LocalCluster> cluster;
    std::vector<double> busy, sys;  // last round, largest batch
  };
  std::vector<Layout> layouts;
  for (int p : *pipelines) {
    auto plan = PlanCluster(*config, o.layer_workers, o.expert_workers, o.replicas, p);
    if (!plan.ok()) return Fail(plan.status());
    for (int d : *depths) {
      for (int m : *micro) {
        LocalClusterOptions lo;
        lo.model = dir;
        lo.plan = *plan;
        lo.weights = o.source.weights;
        lo.threads = o.threads;
        lo.max_running = max_batch;
        lo.max_sequences = max_batch;
        lo.pipeline_depth = d;
        lo.micro_batches = m;
        std::cerr << "starting a cluster with " << p << " pipeline(s), depth " << d << ", " << m
                  << " micro-batch(es)\n";
        auto cluster = LocalCluster::Start(lo);
        if (!cluster.ok()) return Fail(cluster.status());
        layouts.push_back(Layout{p, d, m, *plan, *std::move(cluster), {}, {}});
      }
    }
  }

  // ---- Rounds: the single process, then each cluster, at each batch size. ----------------
  std::unique_ptr<Backend> backend = CreateCpuBackend();
  EngineOptions eo;
  eo.weight_dtype = o.source.weights == "bf16" ? DType::kBF16 : DType::kF32;
  eo.max_sequences = max_batch;
  eo.kv_cache_tokens = int64_t{max_batch} * (o.prompt_len + o.decode_steps + 8 + 16);
  auto engine = Engine::Create(dir, eo, backend.get());
  if (!engine.ok()) return Fail(engine.status());
  // [batch][0: single, 1 + l: layout l] -> tok/s and step ms per round
  const size_t columns = 1 + layouts.size();
  std::vector<std::vector<std::vector<double>>> tok_s(batches.size(),
                                                      std::vector<std::vector<double>>(columns));
  std::vector<std::vector<std::vector<double>>> step_ms = tok_s;
  for (int round = 0; round < o.rounds; ++round) {
    for (size_t b = 0; b < batches.size(); ++b) {
      auto r = TimeEngineBatch(engine->get(), batches[b], o.prompt_len, o.decode_steps, &rng);
      if (!r.ok()) return Fail(r.status());
      tok_s[b][0].push_back(r->decode_tok_s);
      step_ms[b][0].push_back(r->decode_step_ms);
      for (size_t l = 0; l < layouts.size(); ++l) {
        auto c = Cluster(layouts[l].cluster->gateway(), layouts[l].cluster->pids(), batches[b],
                         config->vocab_size, o, &rng);
        if (!c.ok()) return Fail(c.status());
        if (round + 1 == o.rounds && b + 1 == batches.size()) {
          layouts[l].busy = c->busy;
          layouts[l].sys = c->sys;
        }
        tok_s[b][1 + l].push_back(c->tok_s);
        step_ms[b][1 + l].push_back(c->step_ms);
      }
    }
    std::cerr << "round " << round + 1 << " of " << o.rounds << " done\n";
  }
  for (Layout& l : layouts) l.cluster->Stop(absl::Seconds(10));

  std::printf(
      "\nmodel %s: %lld layers, hidden %lld, %lld experts; %s weights; %d threads/process\n",
      dir.c_str(), static_cast<long long>(config->num_layers),
      static_cast<long long>(config->hidden_size), static_cast<long long>(config->num_experts),
      o.source.weights.c_str(), o.threads);
  std::printf("cluster: %d layer workers per pipeline (layers", o.layer_workers);
  for (const auto& [begin, end] : layouts.front().plan.layer_ranges) {
    std::printf(" [%lld, %lld)", static_cast<long long>(begin), static_cast<long long>(end));
  }
  std::printf("), %d expert workers (replicas %d), gateway; loopback\n", o.expert_workers,
              o.replicas);
  std::printf("decode, %d prompt tokens, %d timed steps; medians of %d interleaved rounds\n",
              o.prompt_len, o.decode_steps, o.rounds);
  std::printf("  %5s %22s", "batch", "single tok/s (ms/step)");
  for (const Layout& l : layouts) {
    std::printf(" %26s",
                absl::StrCat("P", l.pipelines, " depth ", l.depth, " micro ", l.micro, " tok/s (x)")
                    .c_str());
  }
  std::printf("\n");
  for (size_t b = 0; b < batches.size(); ++b) {
    const double single = Median(tok_s[b][0]);
    std::printf("  %5d %13.1f (%6.1f)", batches[b], single, Median(step_ms[b][0]));
    for (size_t l = 0; l < layouts.size(); ++l) {
      const double t = Median(tok_s[b][1 + l]);
      std::printf(" %17.1f (%5.2fx)", t, t / single);
    }
    std::printf("\n");
  }
  std::printf(
      "CPU busy fraction per process over the decode window, (kernel part) (batch %d, last "
      "round; 1.0 = one core):\n",
      batches.back());
  for (const Layout& l : layouts) {
    std::printf("  P%d depth %d micro %d:", l.pipelines, l.depth, l.micro);
    size_t i = 0;
    for (int e = 0; e < o.expert_workers; ++e, ++i) {
      std::printf(" expert-%d %.2f (%.2f)", e, l.busy[i], l.sys[i]);
    }
    for (int p = 0; p < l.pipelines; ++p) {
      for (int w = 0; w < o.layer_workers; ++w, ++i) {
        std::printf(" layer-%d.%d %.2f (%.2f)", p, w, l.busy[i], l.sys[i]);
      }
    }
    std::printf(" gateway %.2f (%.2f)\n", l.busy[i], l.sys[i]);
  }
  return 0;
}

}  // namespace
}  // namespace jamba

int main(int argc, char** argv) { return jamba::Run(argc, argv); }
