// The reference drivers move from IommuKit.Core to IommuKit.Drivers (branch lib, issue 8). This declaration keeps
// `using IommuKit.Drivers;` valid on either side of that move; delete it once the move is on main.
namespace IommuKit.Drivers
{
}
