import { existsSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { svelte } from '@sveltejs/vite-plugin-svelte';
import type { Plugin } from 'vite';
import { defineConfig } from 'vitest/config';

const outDir = resolve(import.meta.dirname, 'dist');

// The Go side embeds frontend/dist (`//go:embed all:frontend/dist`) and keeps a
// committed dist/.gitkeep so a fresh clone compiles before the UI is built.
// Vite empties dist/ on every build; put the placeholder back if it was there.
function keepGitkeep(): Plugin {
  const keep = resolve(outDir, '.gitkeep');
  let had = false;
  return {
    name: 'onramp-keep-gitkeep',
    apply: 'build',
    buildStart() {
      had = existsSync(keep);
    },
    closeBundle() {
      if (had && !existsSync(keep)) writeFileSync(keep, '');
    },
  };
}

export default defineConfig({
  plugins: [svelte(), keepGitkeep()],
  // Relative asset URLs: the same build is served by Wails (wails://) and by
  // `onramp serve` over HTTP.
  base: './',
  build: {
    outDir,
    emptyOutDir: true,
    target: 'es2022',
    // No external fonts or CDNs: everything is bundled, the app runs offline.
    assetsInlineLimit: 4096,
    chunkSizeWarningLimit: 600,
  },
  server: {
    proxy: {
      // `npm run dev` against `npm run mock` (or a real `onramp serve`).
      '/api': { target: process.env.ONRAMP_URL ?? 'http://127.0.0.1:18080', changeOrigin: false },
    },
  },
  resolve: process.env.VITEST ? { conditions: ['browser'] } : undefined,
  test: {
    environment: 'happy-dom',
    include: ['src/**/*.test.ts'],
    restoreMocks: true,
  },
});
