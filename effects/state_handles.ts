/**
 * The one model-handle discipline of both engines: an `EngineState` is a handle the engine
 * issued, mapped here to what it names; a handle is used once. A step or a ReLoRA restart
 * retires its input and issues a new handle, `dispose` retires it for good, and any use of a
 * retired handle throws an error saying what retired it, never touching what it named.
 *
 * @module
 */
import type { EngineState } from "../pipeline/mod.ts";

/** Handles of one engine on its states `S`. */
export class StateHandles<S> {
  readonly #engine: string;
  #next = 1;
  readonly #live = new Map<EngineState, S>();
  readonly #retired = new WeakMap<EngineState, string>();

  /** `engine` names the engine in handles and messages, e.g. "tfjs". */
  constructor(engine: string) {
    this.#engine = engine;
  }

  /** A new handle on `state`. */
  issue(state: S): EngineState {
    const handle: EngineState = Object.freeze({ engine: this.#engine, id: this.#next++ });
    this.#live.set(handle, state);
    return handle;
  }

  /**
   * What a live handle names.
   *
   * @throws {Error} naming what retired the handle, or that the engine never issued it.
   */
  get(handle: EngineState): S {
    const state = this.#live.get(handle);
    if (state !== undefined) return state;
    const by = this.#retired.get(handle);
    throw new Error(
      by === undefined
        ? `${this.#engine} engine: state #${handle.id} of the ${handle.engine} engine is not one it issued`
        : `${this.#engine} engine: state #${handle.id} was used after ${by} retired it; a state is used once`,
    );
  }

  /** Retires a live handle (`by` says what did, e.g. "a training step") and returns what it named. */
  retire(handle: EngineState, by: string): S {
    const state = this.get(handle);
    this.#live.delete(handle);
    this.#retired.set(handle, by);
    return state;
  }

  /** Retires `handle` and issues a new one on `next` (a transition's output). */
  replace(handle: EngineState, next: S, by: string): EngineState {
    this.retire(handle, by);
    return this.issue(next);
  }

  /** The states of every live handle. */
  live(): S[] {
    return [...this.#live.values()];
  }
}
