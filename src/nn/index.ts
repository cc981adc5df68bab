export * from "./layers.js";
export * from "./attention.js";
export * from "./blocks.js";
export * from "./init.js";
export * from "./random.js";
