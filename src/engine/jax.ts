/**
 * The project's single entry to jax-js. jax-js creates its wasm backend when it is first evaluated, so
 * the Node shims (worker threads, Float16Array, iterator helpers) must run before it: every module imports
 * jax-js through this file, which guarantees that order.
 */
import "./shims.js";
export * from "@jax-js/jax";
