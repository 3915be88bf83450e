/**
 * Small, dependency-free SVG charts (stacked bars, lines) as pure functions
 * from data to SVG text.
 *
 * @module
 */
export * from "./svg_charts.ts";
