/**
 * The config file (YAML or JSON): codecs for every section, defaults, and the
 * cross-field checks a codec cannot express. Decoded once at the CLI edge,
 * then passed down read-only.
 *
 * @module
 */
import * as t from "io-ts";
import * as E from "fp-ts/lib/Either.js";
import YAML from "yaml";
import {
  ByteSize,
  completeShape,
  type ConfigInvalid,
  configInvalid,
  decodeWith,
  DEFAULT_PLACEMENT,
  FileName,
  Fraction,
  type LlamaShape,
  LlamaShapeCodec,
  NonNegativeInt,
  oneOf,
  type Placement,
  PlacementCodec,
  PositiveInt,
  PositiveNumber,
  type Projection,
  ProjectionCodec,
  PROJECTIONS,
  shapeProblem,
  strict,
} from "../base/mod.ts";
import {
  type ActivationAssumptions,
  type BudgetSpec,
  FUSED_REGISTRIES,
  fusedUnion,
  type FusibleOp,
  kernelTraits,
  type MemoryAssumptions,
} from "../solvers/mod.ts";
import { DataSource, DEFAULT_TOKEN_CACHE_DIR } from "../data/mod.ts";
import {
  EngineCodec,
  type EngineName,
  TORCH_DEFAULTS,
  TorchCodec,
  torchProblem,
  type TorchSettings,
  torchSettings,
} from "./torch_settings.ts";
import { DEFAULT_DATA_DIR, SHARED_ZERO_SHOT } from "../evals/mod.ts";

/** Tensor backends the engine knows. */
export const BACKENDS = ["auto", "wasm", "cpu", "blas", "webgpu", "tensorflow"] as const;
/** A backend name. */
export type BackendName = typeof BACKENDS[number];
/** Codec of a backend name. */
export const BackendCodec = oneOf("backend", BACKENDS);

/**
 * The ops each backend runs fused: the registries it starts (`startBackend` in effects/; `auto`
 * adds OpenBLAS attention to wasm's), so what a plan made before any backend exists assumes.
 * `tests/backend_kernels_test.ts` checks it against `fusedOps()` of the running backends.
 * `cpu`, `blas` and `tensorflow` (tfjs-node) register none.
 */
export const BACKEND_FUSED: Readonly<Record<BackendName, readonly FusibleOp[]>> = {
  auto: fusedUnion(FUSED_REGISTRIES.wasm, FUSED_REGISTRIES.wasmOpenBlas),
  wasm: fusedUnion(FUSED_REGISTRIES.wasm),
  webgpu: fusedUnion(FUSED_REGISTRIES.webgpu),
  cpu: [],
  blas: [],
  tensorflow: [],
};

/**
 * Where `data.source` / `data.validation` read from: `builtin`, a path (file, directory or glob),
 * a source object (`{ path, exclude, gutenberg, field, format }`), or a list of them.
 */
export const DataSourcesCodec = t.union([DataSource, t.array(DataSource)], "sources");
/** See {@link DataSourcesCodec}. */
export type DataSources = t.TypeOf<typeof DataSourcesCodec>;

/** Codec of the `pet:` section: ReLoRA on the frozen layers. */
export const PetCodec = strict("pet", {}, {
  kind: oneOf("pet.kind", ["relora"]),
  rank: PositiveInt,
  alpha: PositiveNumber,
  targets: t.array(ProjectionCodec),
  resetEvery: PositiveInt,
  restartWarmup: NonNegativeInt,
  pruneRatio: Fraction,
});

/** Codec of the `galore:` section: the GaLore baseline's memory (plan) and trainer (compare). */
export const GaloreCodec = strict("galore", {}, {
  rank: PositiveInt,
  targets: t.array(ProjectionCodec),
  updateEvery: PositiveInt,
  scale: PositiveNumber,
  /** Peak LR of the GaLore run (default: training.lr / scale, so lr·scale matches AdamW's). */
  lr: PositiveNumber,
});

/** `activations: true`: count them with the `training:` section's micro-batch, length and modes. */
const COUNT_FROM_TRAINING = true as const;
const FROM_TRAINING = t.literal(COUNT_FROM_TRAINING);

const ActivationsCodec = t.union([
  FROM_TRAINING,
  strict("activations", {}, {
    microBatch: PositiveInt,
    seqLen: PositiveInt,
    recompute: t.boolean,
    lossChunk: PositiveInt,
    accumulation: PositiveInt,
    updateBuffers: NonNegativeInt,
    attention: oneOf("attention", ["fused", "composite"]),
  }),
], "activations");

/** Codec of the `memory:` section: what the planner counts. */
export const MemoryCodec = strict("memory", {}, {
  precision: oneOf("precision", ["mixed", "fp32"]),
  embeddings: t.boolean,
  trainEmbeddingsAfterStage1: t.boolean,
  activations: ActivationsCodec,
});

/** Codec of the `plan:` section. */
export const PlanSectionCodec = strict("plan", {}, {
  stages: PositiveInt,
  minLayers: PositiveInt,
  split: t.array(PositiveInt),
  budget: ByteSize,
  placement: PlacementCodec,
});

/** Codec of the `budget:` section: FLOPs matching across methods. */
export const BudgetCodec = strict("budget", {}, {
  flops: PositiveNumber,
  standardSteps: PositiveInt,
  share: t.union([oneOf("share", ["layers", "equal"]), t.array(PositiveNumber)]),
  growAt: Fraction,
  /**
   * How `deno task compare` charges a token: `paper` (6·N trained + 2·N frozen, non-embedding)
   * or `executed` (the matmuls the engine runs: input gradients below frozen layers, attention
   * scores, LM head, recomputation).
   */
  accounting: oneOf("accounting", ["paper", "executed"]),
});

/** `compare.eval: false`: the runs are not evaluated. */
const NO_EVALUATION = false;

/** Codec of the `compare:` section (`deno task compare`). */
export const CompareCodec = strict("compare", {}, {
  /** `standard`, `relora`, `galore`, `step-K` (K ≥ 2 stages). */
  methods: t.array(t.string),
  /** Seeds per method: one count for all, or a count per method name (1 for the others). */
  seeds: t.union([PositiveInt, t.record(t.string, PositiveInt)]),
  /** A second corpus every run is evaluated on at the end (the paper's WikiText). */
  secondCorpus: DataSourcesCodec,
  secondLabel: t.string,
  /** Micro-batches of the second corpus evaluated (the first ones, the same for every run). */
  secondBatches: PositiveInt,
  /** Fraction of ReLoRA's compute spent on its full-rank warm start. */
  reloraWarmStart: Fraction,
  /**
   * Zero-shot tasks and WikiText perplexity of every run's final model (`deno task eval`), or
   * `false` for none.
   */
  eval: t.union([
    t.literal(NO_EVALUATION),
    strict("compare.eval", {}, {
      tasks: t.array(t.string),
      wikitext: t.boolean,
      limit: PositiveInt,
      dataDir: t.string,
      batch: PositiveInt,
    }),
  ]),
});

/** Codec of the `training:` section (used by `run`). */
export const TrainingCodec = strict("training", {}, {
  backend: BackendCodec,
  seqLen: PositiveInt,
  batchTokens: PositiveInt,
  microBatch: PositiveInt,
  lr: PositiveNumber,
  warmup: NonNegativeInt,
  minLrRatio: Fraction,
  weightDecay: t.number,
  beta1: Fraction,
  beta2: Fraction,
  eps: PositiveNumber,
  clip: PositiveNumber,
  steps: PositiveInt,
  evalEvery: PositiveInt,
  evalBatches: PositiveInt,
  checkpointEvery: PositiveInt,
  logEvery: PositiveInt,
  seed: NonNegativeInt,
  maxSkippedSteps: PositiveInt,
  recompute: oneOf("recompute", ["none", "layers"]),
  lossChunk: PositiveInt,
  engine: EngineCodec,
  torch: TorchCodec,
});

/** Codec of the `data:` section (used by `run`). */
export const DataCodec = strict("data", {}, {
  source: DataSourcesCodec,
  validation: DataSourcesCodec,
  tokenizer: oneOf("tokenizer", ["bytes", "gpt2"]),
  textField: t.string,
  valFraction: Fraction,
  cacheDir: t.string,
  builtinBytes: PositiveInt,
});

/** Codec of a whole config file. */
export const ConfigCodec = strict("config", { model: LlamaShapeCodec }, {
  name: FileName,
  pet: PetCodec,
  galore: GaloreCodec,
  memory: MemoryCodec,
  plan: PlanSectionCodec,
  budget: BudgetCodec,
  training: TrainingCodec,
  data: DataCodec,
  compare: CompareCodec,
});

/** A config as decoded, before defaults. */
export type ConfigInput = t.TypeOf<typeof ConfigCodec>;

/** ReLoRA settings with defaults applied. */
export interface PetSettings {
  readonly kind: "relora";
  readonly rank: number;
  /** Scale is alpha / rank. */
  readonly alpha: number;
  readonly targets: readonly Projection[];
  readonly resetEvery: number;
  readonly restartWarmup: number;
  readonly pruneRatio: number;
}

/** GaLore settings with defaults applied. */
export interface GaloreSettings {
  readonly rank: number;
  readonly targets: readonly Projection[];
  readonly updateEvery: number;
  readonly scale: number;
  /** Peak LR of a GaLore run; undefined: training.lr / scale. */
  readonly lr?: number;
}

/** `deno task compare` settings with defaults applied. */
export interface CompareSettings {
  readonly methods: readonly string[];
  /** Seeds per method: one count for all, or per method name (1 for the others). */
  readonly seeds: number | Readonly<Record<string, number>>;
  readonly accounting: "paper" | "executed";
  readonly secondCorpus: DataSources | undefined;
  readonly secondLabel: string;
  readonly secondBatches: number;
  readonly reloraWarmStart: number;
  /** What `deno task eval` measures on each run's final model; undefined: nothing. */
  readonly eval: CompareEvalSettings | undefined;
}

/** The evaluation of each compared run (`compare.eval`). */
export interface CompareEvalSettings {
  /** Built-in zero-shot tasks; their mean `acc` is the report's zero-shot column. */
  readonly tasks: readonly string[];
  /** Whether WikiText's rolling perplexity is measured too. */
  readonly wikitext: boolean;
  /** The first N items of each zero-shot task. */
  readonly limit: number;
  /** Where the tasks' data is (a missing folder skips the evaluation with a notice). */
  readonly dataDir: string;
  readonly batch: number;
}

/** Defaults of `compare.eval`: the shared zero-shot tasks, 500 items each, and WikiText. */
export const COMPARE_EVAL_DEFAULTS: CompareEvalSettings = {
  tasks: SHARED_ZERO_SHOT,
  wikitext: true,
  limit: 500,
  dataDir: DEFAULT_DATA_DIR,
  batch: 16,
};

/** Planner settings with defaults applied. */
export interface PlanSettings {
  readonly stages: number;
  readonly minLayers: number;
  readonly split: readonly number[] | undefined;
  readonly budgetBytes: number | undefined;
  readonly placement: Placement;
}

/** Training settings with defaults applied. */
export interface TrainingSettings {
  readonly backend: BackendName;
  readonly seqLen: number;
  readonly batchTokens: number;
  readonly microBatch: number;
  readonly lr: number;
  readonly warmup: number;
  readonly minLrRatio: number;
  readonly weightDecay: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly clip: number;
  /** Standard pre-training steps: the compute every method is matched to. */
  readonly steps: number;
  readonly evalEvery: number;
  readonly evalBatches: number;
  readonly checkpointEvery: number;
  readonly logEvery: number;
  readonly seed: number;
  /** Steps in a row with a non-finite loss or gradient (skipped, weights unchanged) that stop the run. */
  readonly maxSkippedSteps: number;
  /**
   * `layers`: keep only each layer's input in the forward pass and recompute the layer in the
   * backward pass (less memory, a second forward pass); `none`: keep every activation.
   */
  readonly recompute: "none" | "layers";
  /**
   * Tokens per chunk of the LM head and cross-entropy: the logits and their gradient never
   * exist whole (the head's matmul runs twice); unset: the whole micro-batch at once.
   */
  readonly lossChunk?: number;
  /** `tfjs` (this process) or `torch` (PyTorch launched per stage, `training.torch`). */
  readonly engine: EngineName;
  readonly torch: TorchSettings;
}

/** Data settings with defaults applied. */
export interface DataSettings {
  /** `builtin`, a file, a directory, a glob, a source object, or a list of them. */
  readonly source: DataSources;
  /** A separate validation source, or undefined to hold out `valFraction`. */
  readonly validation: DataSources | undefined;
  readonly tokenizer: "bytes" | "gpt2";
  readonly textField: string;
  readonly valFraction: number;
  readonly cacheDir: string;
  readonly builtinBytes: number;
}

/** A config with every default applied: what the rest of the program reads. */
export interface Config {
  readonly name: string;
  readonly shape: LlamaShape;
  readonly pet: PetSettings;
  readonly galore: GaloreSettings;
  readonly memory: MemoryAssumptions;
  readonly plan: PlanSettings;
  readonly budget: BudgetSpec;
  readonly training: TrainingSettings;
  readonly data: DataSettings;
  readonly compare: CompareSettings;
}

/** Defaults of the `compare:` section: the five methods, one seed, the paper's rule. */
export const COMPARE_DEFAULTS: CompareSettings = {
  methods: ["standard", "relora", "galore", "step-2", "step-3"],
  seeds: 1,
  accounting: "paper",
  secondCorpus: undefined,
  secondLabel: "second corpus",
  secondBatches: 32,
  reloraWarmStart: 0.25,
  eval: COMPARE_EVAL_DEFAULTS,
};

/** Defaults of the `training:` section: a tiny run that finishes in minutes on 2 cores. */
export const TRAINING_DEFAULTS: TrainingSettings = {
  backend: "auto",
  seqLen: 128,
  batchTokens: 4096,
  microBatch: 8,
  lr: 3e-3,
  warmup: 20,
  minLrRatio: 0.1,
  weightDecay: 0.1,
  beta1: 0.9,
  beta2: 0.95,
  eps: 1e-8,
  clip: 1.0,
  steps: 200,
  evalEvery: 50,
  evalBatches: 8,
  checkpointEvery: 50,
  logEvery: 10,
  seed: 0,
  maxSkippedSteps: 3,
  recompute: "none",
  engine: "tfjs",
  torch: TORCH_DEFAULTS,
};

/** Defaults of the `data:` section: the built-in corpus, bytes, 5% held out. */
export const DATA_DEFAULTS: DataSettings = {
  source: "builtin",
  validation: undefined,
  tokenizer: "bytes",
  textField: "text",
  valFraction: 0.05,
  cacheDir: DEFAULT_TOKEN_CACHE_DIR,
  builtinBytes: 400_000,
};

/** ReLoRA defaults (spec §4–§5): r = 128, α = 32, all seven projections, reset every 5000 steps, 500 re-warm steps, 99% pruning. */
export const PET_DEFAULTS: PetSettings = {
  kind: "relora",
  rank: 128,
  alpha: 32,
  targets: PROJECTIONS,
  resetEvery: 5000,
  restartWarmup: 500,
  pruneRatio: 0.99,
};

/**
 * GaLore defaults (the paper's r = 128, T = 200, α = 0.25). The planner's GaLore memory reads
 * `rank` and `targets`; `updateEvery` and `scale` are decoded now and used by the GaLore trainer
 * (#12), not by the planner: GaLore's memory does not depend on them.
 */
export const GALORE_DEFAULTS: GaloreSettings = {
  rank: 128,
  targets: PROJECTIONS,
  updateEvery: 200,
  scale: 0.25,
};

/** Defaults of the `memory:` section: the paper's assumptions (model state only, mixed precision). */
export const MEMORY_DEFAULTS: MemoryAssumptions = {
  precision: "mixed",
  embeddings: false,
  trainEmbeddingsAfterStage1: false,
  activations: undefined,
};

/**
 * The sources of a `data:` field as the corpus loader takes them: `builtin` becomes the generated
 * corpus, a path string a file source, and `textField` the default field of every file source.
 */
export function resolvedSources(
  sources: DataSources,
  settings: { readonly textField: string; readonly builtinBytes: number; readonly seed: number },
): DataSource[] {
  const list: readonly DataSource[] = Array.isArray(sources) ? sources : [sources as DataSource];
  return list.map((src): DataSource =>
    src === "builtin"
      ? { builtin: { seed: settings.seed, bytes: settings.builtinBytes } }
      : typeof src === "string"
      ? { path: src, field: settings.textField }
      : "path" in src
      ? { field: settings.textField, ...src }
      : src
  );
}

/** A config's data settings as a stage graph's `data:` section (the validation source kept). */
export function graphDataSection(d: DataSettings): t.TypeOf<typeof DataCodec> {
  return {
    source: d.source,
    tokenizer: d.tokenizer,
    textField: d.textField,
    valFraction: d.valFraction,
    cacheDir: d.cacheDir,
    builtinBytes: d.builtinBytes,
    ...(d.validation === undefined ? {} : { validation: d.validation }),
  } as t.TypeOf<typeof DataCodec>;
}

/** Training settings of a graph or config section, defaults applied. */
export function trainingSettings(
  input:
    | Partial<Omit<TrainingSettings, "torch">> & { readonly torch?: Partial<TorchSettings> }
    | undefined,
): TrainingSettings {
  return { ...TRAINING_DEFAULTS, ...input, torch: torchSettings(input?.torch) };
}

/** Data settings of a graph or config section, defaults applied. */
export function dataSettings(input: Partial<DataSettings> | undefined): DataSettings {
  return { ...DATA_DEFAULTS, ...input };
}

/**
 * The batch problems a codec cannot see: whole micro-batches per step, sequences the model can
 * hold. `where` prefixes the field path (`file.yaml: `).
 */
export function trainingProblem(
  training: TrainingSettings,
  shape: LlamaShape,
  where: string,
): ConfigInvalid | undefined {
  const perMicro = training.microBatch * training.seqLen;
  if (training.batchTokens % perMicro !== 0) {
    return configInvalid(
      `${where}training.batchTokens`,
      `${training.batchTokens} is not a multiple of microBatch × seqLen = ${perMicro}`,
    );
  }
  if (training.seqLen > shape.maxSeqLen) {
    return configInvalid(
      `${where}training.seqLen`,
      `${training.seqLen} exceeds model.maxSeqLen = ${shape.maxSeqLen}`,
    );
  }
  if (training.engine !== "torch") return undefined;
  const torch = torchProblem(training.torch, training.batchTokens / training.seqLen);
  return torch === undefined
    ? undefined
    : configInvalid(`${where}training.torch.${torch.field}`, torch.message);
}

/**
 * The activation assumptions of `memory.activations`: each field the section leaves out is the
 * `training:` section's (`true` takes them all), so the plan counts the step the run takes.
 */
export function activationsOf(
  act: Partial<ActivationAssumptions>,
  training: TrainingSettings,
): ActivationAssumptions {
  const microBatch = act.microBatch ?? training.microBatch;
  const seqLen = act.seqLen ?? training.seqLen;
  const lossChunk = act.lossChunk ?? training.lossChunk;
  const kernels = kernelTraits(BACKEND_FUSED[training.backend]);
  return {
    microBatch,
    seqLen,
    recompute: act.recompute ?? training.recompute === "layers",
    accumulation: act.accumulation ??
      Math.max(1, Math.floor(training.batchTokens / (microBatch * seqLen))),
    ...(lossChunk === undefined ? {} : { lossChunk }),
    updateBuffers: act.updateBuffers ?? kernels.updateBuffers,
    attention: act.attention ?? kernels.attention,
  };
}

/** Applies defaults and cross-field checks to a decoded config. */
export function resolveConfig(
  input: ConfigInput,
  file: string,
): E.Either<ConfigInvalid, Config> {
  const shape = completeShape(input.model);
  const problem = shapeProblem(shape);
  if (problem !== undefined) return E.left(configInvalid(`${file}: model`, problem));
  const training = trainingSettings(input.training);
  // A planning-only config (no `training:`) may describe a model longer than the default seqLen.
  const batchProblem = input.training === undefined
    ? undefined
    : trainingProblem(training, shape, `${file}: `);
  if (batchProblem !== undefined) return E.left(batchProblem);
  const b = input.budget;
  if (b?.flops !== undefined && b.standardSteps !== undefined) {
    return E.left(configInvalid(`${file}: budget`, `give "flops" or "standardSteps", not both`));
  }
  const act = input.memory?.activations;
  return E.right({
    name: input.name ?? file.replace(/^.*\//, "").replace(/\.(ya?ml|json)$/, ""),
    shape,
    pet: { ...PET_DEFAULTS, ...input.pet },
    galore: { ...GALORE_DEFAULTS, ...input.galore },
    memory: {
      precision: input.memory?.precision ?? MEMORY_DEFAULTS.precision,
      embeddings: input.memory?.embeddings ?? MEMORY_DEFAULTS.embeddings,
      trainEmbeddingsAfterStage1: input.memory?.trainEmbeddingsAfterStage1 ??
        MEMORY_DEFAULTS.trainEmbeddingsAfterStage1,
      activations: act === undefined ? undefined : activationsOf(act === true ? {} : act, training),
    },
    plan: {
      stages: input.plan?.stages ?? 2,
      minLayers: input.plan?.minLayers ?? 1,
      split: input.plan?.split,
      budgetBytes: input.plan?.budget,
      placement: input.plan?.placement ?? DEFAULT_PLACEMENT,
    },
    budget: {
      total: b?.flops !== undefined
        ? { kind: "flops", flops: b.flops }
        : { kind: "standardSteps", steps: b?.standardSteps ?? training.steps },
      batchTokens: training.batchTokens,
      share: b?.share ?? "layers",
      growAt: b?.growAt ?? 0.75,
    },
    training,
    data: dataSettings(input.data),
    compare: {
      ...COMPARE_DEFAULTS,
      ...input.compare,
      accounting: b?.accounting ?? COMPARE_DEFAULTS.accounting,
      secondCorpus: input.compare?.secondCorpus,
      eval: input.compare?.eval === false
        ? undefined
        : { ...COMPARE_EVAL_DEFAULTS, ...input.compare?.eval },
    },
  });
}

/** Parses YAML (or JSON, a subset) text and decodes it as a config. */
export function parseConfig(text: string, file: string): E.Either<ConfigInvalid, Config> {
  let doc: unknown;
  try {
    doc = YAML.parse(text, { prettyErrors: true, uniqueKeys: true });
  } catch (e) {
    const msg = e instanceof Error ? e.message.split("\n")[0] ?? e.message : String(e);
    return E.left(configInvalid(file, `not valid YAML: ${msg}`));
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
    return E.left(configInvalid(file, "expected a mapping with at least a `model:` section"));
  }
  const decoded = decodeWith(ConfigCodec, doc);
  if (E.isLeft(decoded)) return E.left(configInvalid(file, decoded.left.join("; ")));
  return resolveConfig(decoded.right, file);
}
