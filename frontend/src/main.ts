import { mount } from 'svelte';
import App from './App.svelte';
import './app.css';
import { getApi } from './api';
import { appContext, createAppState } from './lib/appstate';
import { createRouter } from './lib/router';
import { applyTheme, cachedTheme } from './lib/theme';

let storage: Storage | undefined;
try {
  storage = window.localStorage;
} catch {
  storage = undefined;
}

// Paint in the last known theme before Go answers.
applyTheme(cachedTheme(storage), document.documentElement);

const target = document.getElementById('app');
if (!target) throw new Error('onramp: #app element missing from index.html');

const app = mount(App, {
  target,
  props: { route: createRouter(window), storage },
  context: appContext(createAppState(getApi())),
});

export default app;
