/**
 * The config file (YAML or JSON): one `section()` codec per section, each field written once
 * with its codec, default and doc (the settings types are the codecs' types), and the
 * cross-field checks a codec cannot express. Decoded once at the CLI edge, then passed down
 * read-only.
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
  type ext,
  field,
  FileName,
  Fraction,
  type LlamaShape,
  LlamaShapeCodec,
  NonNegativeInt,
  OFF_BY_DEFAULT,
  ON_BY_DEFAULT,
  oneOf,
  optional,
  PlacementCodec,
  PositiveInt,
  PositiveNumber,
  ProjectionCodec,
  PROJECTIONS,
  required,
  type Section,
  section,
  shapeProblem,
  strict,
  withDefaults,
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
import { EngineCodec, TorchCodec, torchProblem } from "./torch_settings.ts";
import { DEFAULT_DATA_DIR, SHARED_ZERO_SHOT } from "../evals/mod.ts";

/** Tensor backends the engine knows. */
export const BACKENDS = ["auto", "wasm", "cpu", "blas", "webgpu", "tensorflow"] as const;
/** A backend name. */
export type BackendName = typeof BACKENDS[number];
/** Codec of a backend name. */
export const BackendCodec: ext.Type<BackendName, BackendName, unknown> = oneOf("backend", BACKENDS);

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
export const DataSourcesCodec: ext.UnionC<[typeof DataSource, ext.ArrayC<typeof DataSource>]> = t
  .union([DataSource, t.array(DataSource)], "sources");
/** See {@link DataSourcesCodec}. */
export type DataSources = ext.TypeOf<typeof DataSourcesCodec>;

/** The fields of {@link PetCodec}, each with its codec and default. */
export const PET_FIELDS = {
  /** The adapter: ReLoRA's LoRA matrices, merged and restarted every `resetEvery` steps. */
  kind: field(oneOf("pet.kind", ["relora"]), "relora"),
  /** Rank r of each adapter's A [in, r] and B [r, out]. */
  rank: field(PositiveInt, 128),
  /** Scale is alpha / rank. */
  alpha: field(PositiveNumber, 32),
  /** The projections that carry adapters. */
  targets: field(t.readonlyArray(ProjectionCodec), PROJECTIONS),
  /** Steps between ReLoRA's merge-and-restarts. */
  resetEvery: field(PositiveInt, 5000),
  /** Steps the LR re-warms over after each reset. */
  restartWarmup: field(NonNegativeInt, 500),
  /** Fraction of the adapters' Adam moments zeroed at each reset (by magnitude). */
  pruneRatio: field(Fraction, 0.99),
};
/** The `pet:` section: ReLoRA on the frozen layers (spec §4–§5). */
export const PetCodec: Section<typeof PET_FIELDS> = section("pet", PET_FIELDS);
/** ReLoRA settings. */
export type PetSettings = ext.TypeOf<typeof PetCodec>;

/** The fields of {@link GaloreCodec}, each with its codec and default. */
export const GALORE_FIELDS = {
  /** Rank r of the projected gradients (clamped to each matrix). */
  rank: field(PositiveInt, 128),
  /** The projections GaLore optimises; the other weights take plain AdamW. */
  targets: field(t.readonlyArray(ProjectionCodec), PROJECTIONS),
  /** Optimizer steps between refreshes of each projector (the gradient's SVD). */
  updateEvery: field(PositiveInt, 200),
  /** Factor applied to the update projected back to the weight's shape. */
  scale: field(PositiveNumber, 0.25),
  /** Peak LR of the GaLore run (unset: training.lr / scale, so lr·scale matches AdamW's). */
  lr: optional(PositiveNumber),
};

/**
 * The `galore:` section: the GaLore baseline's memory (plan) and trainer (compare), with the
 * paper's r = 128, T = 200, α = 0.25. The planner's GaLore memory reads `rank` and `targets`
 * only: GaLore's memory does not depend on the others.
 */
export const GaloreCodec: Section<typeof GALORE_FIELDS> = section("galore", GALORE_FIELDS);
/** GaLore settings. */
export type GaloreSettings = ext.TypeOf<typeof GaloreCodec>;

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

/** The fields of {@link MemoryCodec}, each with its codec and default. */
export const MEMORY_FIELDS = {
  /** `mixed`: 16-bit weight and gradient, fp32 master weight and moments; `fp32`: all fp32. */
  precision: field(oneOf("precision", ["mixed", "fp32"]), "mixed"),
  /** Count token embedding, final norm and LM head (outside Eq. 1–2). */
  embeddings: OFF_BY_DEFAULT,
  /** Keep embeddings, final norm and LM head trainable after stage 1. */
  trainEmbeddingsAfterStage1: OFF_BY_DEFAULT,
  /** Activations too (outside Eq. 1–2); each field left out is the `training:` section's. */
  activations: optional(ActivationsCodec),
};

/**
 * The `memory:` section: what the planner counts. The defaults are the paper's assumptions:
 * model state only, mixed precision.
 */
export const MemoryCodec: Section<typeof MEMORY_FIELDS> = section("memory", MEMORY_FIELDS);

/** The fields of {@link PlanSectionCodec}, each with its codec and default. */
export const PLAN_FIELDS = {
  /** Number of stages K the integer program splits the model into. */
  stages: field(PositiveInt, 2),
  /** Fewest layers any stage adds. */
  minLayers: field(PositiveInt, 1),
  /** A fixed split n_1..n_K instead of the integer program's. */
  split: optional(t.readonlyArray(PositiveInt)),
  /** A memory budget in bytes: plan the most stages that fit under it. */
  budget: optional(ByteSize),
  /** Where growth inserts the new layers. */
  placement: field(PlacementCodec, DEFAULT_PLACEMENT),
};
/** The `plan:` section. */
export const PlanSectionCodec: Section<typeof PLAN_FIELDS> = section("plan", PLAN_FIELDS);
/** Planner settings. */
export type PlanSettings = ext.TypeOf<typeof PlanSectionCodec>;

/** How `deno task compare` charges a token in FLOPs (see {@link BUDGET_FIELDS}' `accounting`). */
export type FlopsAccounting = "paper" | "executed";
/** How `deno task compare` charges a token. */
export const AccountingCodec: ext.Type<FlopsAccounting, FlopsAccounting, unknown> = oneOf(
  "accounting",
  ["paper", "executed"],
);

/** The fields of {@link BudgetCodec}, each with its codec and default. */
export const BUDGET_FIELDS = {
  /** The compute every method is given, in FLOPs (unset: `standardSteps`'). */
  flops: optional(PositiveNumber),
  /** Unset with `flops` unset too: `training.steps`. */
  standardSteps: optional(PositiveInt),
  /** How STEP's compute is shared between its stages: `layers` (n_i / L), `equal` or weights. */
  share: field(
    t.union([oneOf("share", ["layers", "equal"]), t.readonlyArray(PositiveNumber)]),
    "layers",
  ),
  /** Fraction of a stage's schedule after which growth cuts it short. */
  growAt: field(Fraction, 0.75),
  /**
   * How `deno task compare` charges a token: `paper` (6·N trained + 2·N frozen, non-embedding)
   * or `executed` (the matmuls the engine runs: input gradients below frozen layers, attention
   * scores, LM head, recomputation).
   */
  accounting: field(AccountingCodec, "paper"),
};
/** The `budget:` section: FLOPs matching across methods (at most one of `flops`, `standardSteps`). */
export const BudgetCodec: Section<typeof BUDGET_FIELDS> = section("budget", BUDGET_FIELDS);

/** `compare.eval: false`: the runs are not evaluated. */
const NO_EVALUATION = false;

/** The fields of {@link CompareEvalCodec}, each with its codec and default. */
export const COMPARE_EVAL_FIELDS = {
  /** Built-in zero-shot tasks; their mean `acc` is the report's zero-shot column. */
  tasks: field(t.readonlyArray(t.string), SHARED_ZERO_SHOT),
  /** Whether WikiText's rolling perplexity is measured too. */
  wikitext: ON_BY_DEFAULT,
  /** The first N items of each zero-shot task. */
  limit: field(PositiveInt, 500),
  /** Where the tasks' data is (a missing folder skips the evaluation with a notice). */
  dataDir: field(t.string, DEFAULT_DATA_DIR),
  /** Requests scored per batch. */
  batch: field(PositiveInt, 16),
};
/** The evaluation of each compared run (`compare.eval`): what `deno task eval` measures. */
export const CompareEvalCodec: Section<typeof COMPARE_EVAL_FIELDS> = section(
  "compare.eval",
  COMPARE_EVAL_FIELDS,
);
/** `compare.eval` settings. */
export type CompareEvalSettings = ext.TypeOf<typeof CompareEvalCodec>;

/** The fields of {@link CompareCodec}, each with its codec and default. */
export const COMPARE_FIELDS = {
  /** `standard`, `relora`, `galore`, `step-K` (K ≥ 2 stages). */
  methods: field(t.readonlyArray(t.string), ["standard", "relora", "galore", "step-2", "step-3"]),
  /** Seeds per method: one count for all, or a count per method name (1 for the others). */
  seeds: field(t.union([PositiveInt, t.record(t.string, PositiveInt)]), 1),
  /** A second corpus every run is evaluated on at the end (the paper's WikiText). */
  secondCorpus: optional(DataSourcesCodec),
  /** The second corpus's name in the report. */
  secondLabel: field(t.string, "second corpus"),
  /** Micro-batches of the second corpus evaluated (the first ones, the same for every run). */
  secondBatches: field(PositiveInt, 32),
  /** Fraction of ReLoRA's compute spent on its full-rank warm start. */
  reloraWarmStart: field(Fraction, 0.25),
  /** Zero-shot tasks and WikiText perplexity of every run's final model, or `false` for none. */
  eval: field(t.union([t.literal(NO_EVALUATION), CompareEvalCodec]), {}),
};
/** The `compare:` section (`deno task compare`): by default the five methods, one seed. */
export const CompareCodec: Section<typeof COMPARE_FIELDS> = section("compare", COMPARE_FIELDS);
/** `deno task compare` settings. */
export type CompareSettings = ext.TypeOf<typeof CompareCodec>;

/** The fields of {@link TrainingCodec}, each with its codec and default. */
export const TRAINING_FIELDS = {
  /** The tfjs backend the tfjs engine runs on (`auto`: the fastest measured on a CPU). */
  backend: field(BackendCodec, "auto"),
  /** Tokens per sequence. */
  seqLen: field(PositiveInt, 128),
  /** Tokens per optimizer step (micro-batches accumulate up to it). */
  batchTokens: field(PositiveInt, 4096),
  /** Sequences per micro-batch: one forward and backward pass. */
  microBatch: field(PositiveInt, 8),
  /** Peak learning rate of each stage's warmup + cosine. */
  lr: field(PositiveNumber, 3e-3),
  /** Warmup steps of each stage's schedule. */
  warmup: field(NonNegativeInt, 20),
  /** The cosine's floor as a fraction of the peak learning rate. */
  minLrRatio: field(Fraction, 0.1),
  /** AdamW's decoupled weight decay, applied to matrices only (norm weights are not decayed). */
  weightDecay: field(t.number, 0.1),
  /** AdamW's first-moment decay β1. */
  beta1: field(Fraction, 0.9),
  /** AdamW's second-moment decay β2. */
  beta2: field(Fraction, 0.95),
  /** AdamW's ε, added to √v̂. */
  eps: field(PositiveNumber, 1e-8),
  /** Global gradient-norm clipping threshold. */
  clip: field(PositiveNumber, 1.0),
  /** Standard pre-training steps: the compute every method is matched to. */
  steps: field(PositiveInt, 200),
  /** Steps between validation evaluations. */
  evalEvery: field(PositiveInt, 50),
  /** Validation micro-batches per evaluation. */
  evalBatches: field(PositiveInt, 8),
  /** Steps between checkpoints. */
  checkpointEvery: field(PositiveInt, 50),
  /** Steps between progress lines. */
  logEvery: field(PositiveInt, 10),
  /**
   * Whether the run also writes its metrics as TensorBoard event files (`RUN/tensorboard/`), so
   * `tensorboard --logdir runs/` plots every run; `false`: `metrics.jsonl` only.
   */
  tensorboard: ON_BY_DEFAULT,
  /** The run's seed, from which every random stream is derived (`seeds.ts`). */
  seed: field(NonNegativeInt, 0),
  /** Steps in a row with a non-finite loss or gradient (skipped, weights unchanged) that stop the run. */
  maxSkippedSteps: field(PositiveInt, 3),
  /**
   * `layers`: keep only each layer's input in the forward pass and recompute the layer in the
   * backward pass (less memory, a second forward pass); `none`: keep every activation.
   */
  recompute: field(oneOf("recompute", ["none", "layers"]), "none"),
  /** `tfjs` (this process) or `torch` (PyTorch launched per stage, `training.torch`). */
  engine: field(EngineCodec, "tfjs"),
  torch: field(TorchCodec, {}),
  /**
   * Tokens per chunk of the LM head and cross-entropy: the logits and their gradient never
   * exist whole (the head's matmul runs twice); unset: the whole micro-batch at once.
   */
  lossChunk: optional(PositiveInt),
};
/** The `training:` section (used by `run`): a tiny run that finishes in minutes on 2 cores. */
export const TrainingCodec: Section<typeof TRAINING_FIELDS> = section("training", TRAINING_FIELDS);
/** Training settings. */
export type TrainingSettings = ext.TypeOf<typeof TrainingCodec>;

/**
 * Codec of `data.tokenizer`: `bytes`, `gpt2`, or a path to a `tokenizer.json` or a folder holding
 * one. Only the form is checked here; the file is read (and a missing one named) when the run
 * loads it.
 */
export const TokenizerSpecCodec: ext.Type<string, string, unknown> = new t.Type<
  string,
  string,
  unknown
>(
  "TokenizerSpec",
  (u): u is string => typeof u === "string" && u.trim() !== "",
  (u, c) =>
    typeof u === "string" && u.trim() !== "" ? t.success(u) : t.failure(
      u,
      c,
      'expected "bytes", "gpt2", or a path to a tokenizer.json or a Hugging Face model folder',
    ),
  t.identity,
);

/** The fields of {@link DataCodec}, each with its codec and default. */
export const DATA_FIELDS = {
  /** `builtin`, a file, a directory, a glob, a source object, or a list of them. */
  source: field(DataSourcesCodec, "builtin"),
  /**
   * `bytes` (one id per byte), `gpt2` (GPT-2's BPE), or a path (relative to the working
   * directory, as `source` is) to a Hugging Face `tokenizer.json` or a model folder holding one.
   */
  tokenizer: field(TokenizerSpecCodec, "bytes"),
  /** The field of a JSON-lines or Parquet record that holds its text. */
  textField: field(t.string, "text"),
  /** Fraction of the source held out for validation. */
  valFraction: field(Fraction, 0.05),
  /** Where tokenised sources are cached as token shards. */
  cacheDir: field(t.string, DEFAULT_TOKEN_CACHE_DIR),
  /** Size of the generated built-in corpus. */
  builtinBytes: field(PositiveInt, 400_000),
  /** A separate validation source (unset: `valFraction` of the source is held out). */
  validation: optional(DataSourcesCodec),
};
/** The `data:` section (used by `run`): by default the built-in corpus, bytes, 5% held out. */
export const DataCodec: Section<typeof DATA_FIELDS> = section("data", DATA_FIELDS);
/** Data settings. */
export type DataSettings = ext.TypeOf<typeof DataCodec>;

/** The fields of {@link ConfigCodec}: the sections of a config file. */
export const CONFIG_FIELDS = {
  /** The model's shape (`hidden`, `layers`, `heads`, …; the rest completed from them). */
  model: required(LlamaShapeCodec),
  /** The run's name, its folder under `runs/` (unset: the file's name). */
  name: optional(FileName),
  /** ReLoRA's settings. */
  pet: field(PetCodec, {}),
  /** The GaLore baseline's settings. */
  galore: field(GaloreCodec, {}),
  /** What the planner counts. */
  memory: field(MemoryCodec, {}),
  /** The planner's settings. */
  plan: field(PlanSectionCodec, {}),
  /** FLOPs matching across methods. */
  budget: field(BudgetCodec, {}),
  /** Unset: a planning-only config, whose model may be longer than the default `seqLen`. */
  training: optional(TrainingCodec),
  /** The corpus and its tokenizer. */
  data: field(DataCodec, {}),
  /** `deno task compare`'s methods, seeds and evaluation. */
  compare: field(CompareCodec, {}),
};
/** Codec of a whole config file. */
export const ConfigCodec: Section<typeof CONFIG_FIELDS> = section("config", CONFIG_FIELDS);

/** A config file as decoded, before the cross-field checks and the derived settings. */
export type ConfigInput = ext.TypeOf<typeof ConfigCodec>;

/** The compute budget: the planner's, and how `deno task compare` charges a token. */
export type BudgetSettings = BudgetSpec & {
  readonly accounting: FlopsAccounting;
};

/** A config as the rest of the program reads it. */
export interface Config {
  /** The run's name (the file's when the config gives none): its folder under `runs/`. */
  readonly name: string;
  /** The model's shape, completed and checked. */
  readonly shape: LlamaShape;
  /** ReLoRA's settings. */
  readonly pet: PetSettings;
  /** The GaLore baseline's settings. */
  readonly galore: GaloreSettings;
  /** The `memory:` section with its activations counted from `training:`. */
  readonly memory: MemoryAssumptions;
  /** The planner's settings. */
  readonly plan: PlanSettings;
  /** The compute budget, its total resolved from `flops` or `standardSteps`. */
  readonly budget: BudgetSettings;
  /** The training settings (defaults for a planning-only config). */
  readonly training: TrainingSettings;
  /** The corpus and its tokenizer. */
  readonly data: DataSettings;
  /** `deno task compare`'s settings. */
  readonly compare: CompareSettings;
}

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
    gradientNorm: act.gradientNorm ?? kernels.gradientNorm,
    productSums: act.productSums ?? kernels.productSums,
  };
}

/** The cross-field checks and the derived settings of a decoded config. */
function resolveConfig(input: ConfigInput, file: string): E.Either<ConfigInvalid, Config> {
  const shape = completeShape(input.model);
  const problem = shapeProblem(shape);
  if (problem !== undefined) return E.left(configInvalid(`${file}: model`, problem));
  const training = input.training ?? withDefaults(TrainingCodec, {});
  // A planning-only config (no `training:`) may describe a model longer than the default seqLen.
  const batchProblem = input.training === undefined
    ? undefined
    : trainingProblem(training, shape, `${file}: `);
  if (batchProblem !== undefined) return E.left(batchProblem);
  const { flops, standardSteps, ...budget } = input.budget;
  if (flops !== undefined && standardSteps !== undefined) {
    return E.left(configInvalid(`${file}: budget`, `give "flops" or "standardSteps", not both`));
  }
  const { activations, ...memory } = input.memory;
  return E.right({
    name: input.name ?? file.replace(/^.*\//, "").replace(/\.(ya?ml|json)$/, ""),
    shape,
    pet: input.pet,
    galore: input.galore,
    memory: {
      ...memory,
      activations: activations === undefined
        ? undefined
        : activationsOf(activations === true ? {} : activations, training),
    },
    plan: input.plan,
    budget: {
      total: flops !== undefined
        ? { kind: "flops", flops }
        : { kind: "standardSteps", steps: standardSteps ?? training.steps },
      batchTokens: training.batchTokens,
      ...budget,
    },
    training,
    data: input.data,
    compare: input.compare,
  });
}

/**
 * Decodes a parsed config document (YAML or JSON) once: the codecs apply the defaults, then the
 * cross-field checks run.
 */
export function decodeConfig(doc: unknown, file: string): ext.Either<ConfigInvalid, Config> {
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
    return E.left(configInvalid(file, "expected a mapping with at least a `model:` section"));
  }
  const decoded = decodeWith(ConfigCodec, doc);
  if (E.isLeft(decoded)) return E.left(configInvalid(file, decoded.left.join("; ")));
  return resolveConfig(decoded.right, file);
}

/** Parses YAML (or JSON, a subset) text and decodes it as a config. */
export function parseConfig(text: string, file: string): ext.Either<ConfigInvalid, Config> {
  let doc: unknown;
  try {
    doc = YAML.parse(text, { prettyErrors: true, uniqueKeys: true });
  } catch (e) {
    const msg = e instanceof Error ? e.message.split("\n")[0] ?? e.message : String(e);
    return E.left(configInvalid(file, `not valid YAML: ${msg}`));
  }
  return decodeConfig(doc, file);
}
