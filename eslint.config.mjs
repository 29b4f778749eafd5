// ESLint for the viewer (browser ES modules served as they are, no bundler) and the end-to-end
// driver (a Node script). `npm run lint`; `make lint` runs it with ruff and mypy.
import js from '@eslint/js';
import globals from 'globals';

export default [
  { ignores: ['node_modules/', '.venv/', 'bench/out/'] },
  js.configs.recommended,
  {
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      'no-unused-vars': ['error', { args: 'after-used', caughtErrors: 'none' }],
      'no-var': 'error',
      'prefer-const': 'error',
      eqeqeq: ['error', 'always', { null: 'ignore' }], // `x == null`: null or undefined
      'no-shadow': 'error',
      'no-use-before-define': ['error', { functions: false, classes: true, variables: true }],
      'no-implicit-globals': 'error',
      'no-console': 'off',
    },
  },
  {
    files: ['api/static/**/*.js'],
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: 'module',
      // maplibregl, the one script index.html loads before the modules, is declared with
      // /* global maplibregl */ in the modules that use it.
      globals: { ...globals.browser },
    },
  },
  {
    files: ['tests/e2e/**/*.mjs'],
    languageOptions: { ecmaVersion: 2022, sourceType: 'module', globals: { ...globals.node } },
  },
];
