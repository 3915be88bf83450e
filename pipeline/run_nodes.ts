/**
 * One transition per kind of node, chosen by an exhaustive switch on `op`
 * (a new kind of node does not compile until it is handled here). Every
 * node ends by moving the progress to the next node; a `train`/`continue`
 * node also checkpoints there, so resuming never retrains a finished stage.
 *
 * @module
 */
import * as E from "fp-ts/lib/Either.js";
import { absurd } from "fp-ts/lib/function.js";
import {
  adaptedWeights,
  formatBytes,
  graphInvalid,
  grownTrainable,
  stageTrainable,
} from "../base/mod.ts";
import { attachedSnapshot, grownSnapshot, initialSnapshot } from "../checkpoint/mod.ts";
import {
  accountOf,
  type BoundaryCost,
  checkpointRun,
  evaluateModel,
  loadModel,
  recordMetric,
  type RunFacts,
  sequence,
  transformModel,
  type Transition,
  transition,
} from "./run_steps.ts";
import { enginePeakBytes, type Env } from "./effects.ts";
import type { RunModel, RunState, StageRecord } from "./run_state.ts";
import type { CheckpointNode, EvalNode, StageNode } from "./stage_graph.ts";
import { trainStage } from "./train_stage.ts";
import { galoreWeights, type GraphStage } from "./validate_graph.ts";

/** The transition of one node of the graph. */
export function runNode(facts: RunFacts, node: StageNode): Transition {
  switch (node.op) {
    case "train":
    case "continue":
      return stageNode(facts, stageOf(facts, node.id));
    case "grow":
      return sequence(growNode(facts, stageOpenedBy(facts, node.id)), nextNode);
    case "attachPET":
      return sequence(attachNode(facts, stageAdaptedBy(facts, node.id)), nextNode);
    case "eval":
      return sequence(evalNode(facts, node), nextNode);
    case "checkpoint":
      return sequence(checkpointNode(facts, node), nextNode);
    default:
      return absurd(node);
  }
}

function stageOf(facts: RunFacts, nodeId: string): GraphStage {
  const stage = facts.graph.stages.find((s) => s.trainNodeId === nodeId);
  if (stage === undefined) throw new Error(`node "${nodeId}" trains no stage`);
  return stage;
}

function stageOpenedBy(facts: RunFacts, nodeId: string): GraphStage {
  const stage = facts.graph.stages.find((s) => s.growth?.nodeId === nodeId);
  if (stage === undefined) throw new Error(`node "${nodeId}" opens no stage`);
  return stage;
}

function stageAdaptedBy(facts: RunFacts, nodeId: string): GraphStage {
  const stage = facts.graph.stages.find((s) => s.pet?.nodeId === nodeId);
  if (stage === undefined) throw new Error(`node "${nodeId}" adapts no stage`);
  return stage;
}

const nextNode: Transition = transition((s) =>
  Promise.resolve(E.right({
    ...s,
    progress: { ...s.progress, nodeIndex: s.progress.nodeIndex + 1, stepInNode: 0 },
  }))
);

/** `train` (stage 1, from fresh weights) or `continue`: the stage's steps, evaluation, record. */
function stageNode(facts: RunFacts, stage: GraphStage): Transition {
  return sequence(
    initIfFresh(facts, stage),
    announceStage(facts, stage),
    trainStage(facts, stage),
    finishStage(facts, stage),
    checkpointRun(stage.trainNodeId, facts.voice),
  );
}

function initIfFresh(facts: RunFacts, stage: GraphStage): Transition {
  return transition(async (s, env) => {
    if (s.model !== undefined) return E.right(s);
    const g = facts.graph;
    const galore = stage.galore === undefined ? undefined : {
      rank: stage.galore.rank,
      updateEvery: stage.galore.updateEvery,
      scale: stage.galore.scale,
      targets: galoreWeights(stage),
    };
    const model = await loadModel(
      env,
      g.shape,
      initialSnapshot(g.shape, stage.layers, facts.seeds.weights),
      galore === undefined ? {} : { galore },
    );
    if (galore !== undefined && E.isRight(model)) {
      env.log.line(
        `GaLore on ${galore.targets.length} matrices: rank ${galore.rank} (clamped to each ` +
          `matrix), projectors from the gradient's SVD every ${galore.updateEvery} steps, scale ${galore.scale}`,
      );
    }
    return E.map((m: RunModel) => ({ ...s, model: m }))(model);
  });
}

function announceStage(facts: RunFacts, stage: GraphStage): Transition {
  return transition((s, env) => {
    // The process's peak is the stage's from here (on resume: from the resumed step).
    env.processMemory.resetPeak();
    if (s.progress.stepInNode === 0) {
      const st = accountOf(s, stage.trainNodeId).stats;
      env.log.line(
        `Stage ${stage.index} (${stage.trainNodeId}): ${st.layers} layers, trainable ${st.trainableParams}, frozen ${st.frozenParams}, adapters ${st.adapterParams}; ${stage.steps} steps`,
      );
      const budget = facts.graph.pipeline.memoryBudget;
      const predicted = facts.predicted[stage.index - 1]?.peakBytes;
      if (budget !== undefined && predicted !== undefined && predicted > budget) {
        env.log.line(
          `  warning: stage ${stage.index}'s predicted peak ${
            formatBytes(predicted)
          } exceeds the ` +
            `memory budget ${formatBytes(budget)} on ${facts.graph.training.backend}`,
        );
      }
    }
    return Promise.resolve(E.right(s));
  });
}

function finishStage(facts: RunFacts, stage: GraphStage): Transition {
  return transition(async (s, env) => {
    const t0 = env.clock.now();
    const ev = await evaluateModel(s, env, { node: stage.trainNodeId, batches: facts.validation });
    if (E.isLeft(ev)) return ev;
    const { state, loss } = ev.right;
    const wallSeconds = (state.progress.stageSeconds ?? 0) + (env.clock.now() - t0) / 1000;
    const record = stageRecord(facts, stage, { state, loss, wallSeconds }, env);
    const recorded = recordMetric(state, env, { type: "stage", ...record });
    const p = recorded.progress;
    return E.right({
      ...recorded,
      progress: {
        ...p,
        stages: [...p.stages, record],
        stagePeak: null,
        merges: 0,
        stageSeconds: 0,
        nodeIndex: p.nodeIndex + 1,
        stepInNode: 0,
      },
    });
  });
}

/** What a finished stage measured (its model, peaks and time) beside what the plan predicted. */
function stageRecord(
  facts: RunFacts,
  stage: GraphStage,
  end: { readonly state: RunState; readonly loss: number; readonly wallSeconds: number },
  env: Env,
): StageRecord {
  const { state } = end;
  const { stats: st, state: held } = accountOf(state, stage.trainNodeId);
  const accounted = state.progress.stagePeak?.accounted ?? held;
  const measured = state.progress.stagePeak?.measured ?? { bufferBytes: 0, tensorCountBytes: 0 };
  const predicted = facts.predicted[stage.index - 1];
  return {
    stage: stage.index,
    node: stage.trainNodeId,
    layers: st.layers,
    trainableParams: st.trainableParams,
    frozenParams: st.frozenParams,
    adapterParams: st.adapterParams,
    steps: stage.steps,
    valLoss: end.loss,
    merges: state.progress.merges,
    accountedStateBytes: accounted.total,
    accountedState: accounted,
    measuredPeakBytes: enginePeakBytes(measured),
    bufferPeakBytes: measured.bufferBytes,
    tensorCountPeakBytes: measured.tensorCountBytes,
    heapBytes: measured.heapBytes ?? null,
    gpuPeakBytes: measured.gpuBytes ?? null,
    processPeakBytes: env.processMemory.peakBytes() ?? null,
    predictedStateBytes: predicted?.stateBytes ?? 0,
    predictedPeakBytes: predicted?.peakBytes ?? 0,
    predictedPeakAt: predicted?.peakAt ?? "",
    wallSeconds: end.wallSeconds,
  };
}

/** What a boundary's copy through host memory cost, for the log. */
function costText(c: BoundaryCost): string {
  return `model copied through host memory: ${formatBytes(c.bytes)} in ${Math.round(c.ms)} ms`;
}

function growNode(facts: RunFacts, stage: GraphStage): Transition {
  return transition(async (s, env) => {
    const growth = stage.growth!;
    const spec = {
      add: stage.added,
      placement: growth.placement,
      seed: growth.seed,
      trainable: grownTrainable(stage.roles),
    };
    const grown = await transformModel(
      s,
      env,
      { node: growth.nodeId, what: "Growth", shape: facts.graph.shape },
      (snap) => grownSnapshot(snap, spec),
    );
    if (E.isLeft(grown)) return grown;
    const { state, cost } = grown.right;
    const layers = accountOf(state, growth.nodeId).stats.layers;
    env.log.line(
      `Grow (${growth.nodeId}): +${stage.added} layers (${growth.placement}), now ${layers}; ${
        costText(cost)
      }`,
    );
    return E.right(recordMetric(state, env, {
      type: "grow",
      node: growth.nodeId,
      add: stage.added,
      layers,
    }));
  });
}

function attachNode(facts: RunFacts, stage: GraphStage): Transition {
  return transition(async (s, env) => {
    const pet = stage.pet!;
    const spec = {
      rank: pet.rank,
      alpha: pet.alpha,
      seed: facts.seeds.adapters(stage.index),
      adapted: adaptedWeights(stage.roles),
      trainable: stageTrainable(stage.roles, facts.graph.shape),
    };
    const attached = await transformModel(
      s,
      env,
      { node: pet.nodeId, what: "Attaching ReLoRA", shape: facts.graph.shape },
      (snap) => attachedSnapshot(snap, spec),
    );
    if (E.isLeft(attached)) return attached;
    const { state, cost } = attached.right;
    const st = accountOf(state, pet.nodeId).stats;
    env.log.line(
      `Attach ReLoRA (${pet.nodeId}): r=${pet.rank}, α=${pet.alpha}, ${st.adapterParams} adapter parameters on ${
        st.layers - stage.added
      } frozen layers; ${costText(cost)}`,
    );
    return E.right(state);
  });
}

function evalNode(facts: RunFacts, node: EvalNode): Transition {
  return transition(async (s, env) => {
    const count = node.batches ?? facts.graph.training.evalBatches;
    if (node.source !== undefined) {
      const other = env.data.evaluationSet?.(node.id, count);
      if (other === undefined || other.length === 0) {
        return E.left(graphInvalid(node.id, "the data effect holds no batches of its `source`"));
      }
      const ev = await evaluateModel(s, env, {
        node: node.id,
        batches: other,
        set: node.label ?? node.id,
      });
      return E.map((r: { readonly state: typeof s }) => r.state)(ev);
    }
    const batches = count === facts.validation.length
      ? facts.validation
      : env.data.validation(count);
    const ev = await evaluateModel(s, env, { node: node.id, batches });
    return E.map((r: { readonly state: typeof s }) => r.state)(ev);
  });
}

function checkpointNode(facts: RunFacts, node: CheckpointNode): Transition {
  return transition(async (s, env) => {
    const saved = await checkpointRun(node.id, facts.voice)(s)(env)();
    if (E.isRight(saved)) {
      env.log.line(`Checkpoint (${node.id}) at global step ${s.progress.globalStep}`);
    }
    return saved;
  });
}
