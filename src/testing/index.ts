export {
  type FakeCall,
  type FakeHealth,
  FakeLauncher,
  type FakeLauncherOptions,
  type FakeTerminate,
} from './fake-launcher.js';
