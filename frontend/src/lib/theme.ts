import type { Theme } from '../api';

const KEY = 'onramp.theme';

/**
 * applyTheme sets data-theme on <html> for an explicit choice; with
 * "system" it removes it so the CSS follows prefers-color-scheme. The choice
 * is cached locally so the next start paints in the right theme at once.
 */
export function applyTheme(theme: Theme, root: HTMLElement = document.documentElement, storage?: Storage): void {
  if (theme === 'light' || theme === 'dark') root.dataset['theme'] = theme;
  else delete root.dataset['theme'];
  try {
    storage?.setItem(KEY, theme);
  } catch {
    // storage may be unavailable (private mode); the server copy is the truth
  }
}

export function cachedTheme(storage?: Storage): Theme {
  try {
    const v = storage?.getItem(KEY);
    if (v === 'light' || v === 'dark' || v === 'system') return v;
  } catch {
    // ignore
  }
  return 'system';
}
